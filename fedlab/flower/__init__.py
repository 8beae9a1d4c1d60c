"""The course's FedAvg on Flower's deployment engine (lesson 11 and the workshop).

Three parts, none of which imports ``flwr`` at import time:

- :mod:`fedlab.flower.core` - pure, Flower-free logic that the Flower app and
  the tests share: parameters <-> array records, the client's reply (lesson
  02's :func:`fedlab.fedavg.client_update`, unchanged), the server's weighted
  aggregation (:func:`fedlab.fedavg.aggregate` and
  :func:`fedlab.fedavg.server_update`, unchanged), the round-timeout rule,
  config parsing, the ``FEDLAB_*`` progress lines and an in-process
  simulation of exactly the same rounds;
- ``fedlab/flower/app/`` - the Flower app project (``pyproject.toml``,
  ``ClientApp``, ``ServerApp``), thin wrappers around :mod:`core`; it runs
  where flwr is installed (the course environment);
- :mod:`fedlab.flower.local` - a SuperLink and SuperNodes on ``127.0.0.1``
  started as subprocesses and always stopped (``Federation``), plus the argv
  builders the workshop reuses with TLS and SuperNode authentication.

``import fedlab`` never imports this package.
"""

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "app"
"""The Flower app project folder: ``flwr run <APP_DIR> <connection>``."""
