"""Test-wide settings.

Hypothesis: no per-example deadline anywhere (a 2-core machine running two pytest workers, a JupyterLab server
and Chromium makes wall time a poor signal; hang guards are pytest-timeout's job). Under ``CI`` the examples are
derandomized, so a CI run is reproducible and a red run can be replayed exactly; locally they stay random, to
keep finding new cases.
"""

import os

from hypothesis import settings

settings.register_profile("fedlab", deadline=None, print_blob=True)
settings.register_profile("fedlab-ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("fedlab-ci" if os.environ.get("CI") else "fedlab")
