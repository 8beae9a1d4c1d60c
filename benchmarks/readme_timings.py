"""Write the README lesson table's "runs in" column from a measured run, not by hand.

    PYTHONPATH=$PWD python -m pytest tests/test_notebooks.py -k "00_ or 01_" --basetemp=/tmp/nb
    PYTHONPATH=$PWD python benchmarks/readme_timings.py /tmp/nb/notebook_times.json [--write]

``tests/test_notebooks.py`` writes ``notebook_times.json`` (``{"solutions/02_fedavg.ipynb": 48.1, ...}``). For
every lesson measured, the solution's wall time replaces the lesson's "runs in" cell as ``~N s (measured
<date>)``; lessons not in the file keep their cell. Without ``--write`` the new table is printed only. The
measurement is a shared machine's: say so when you quote it. Last line: JSON of the seconds used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| (\d\d) \| `(\w+)`([^|]*) \| ([^|]+) \| ([^|]+) \|$")
"""A lesson row: number, notebook, what follows its name (" (advanced track)"), working time, "runs in"."""


def regenerate(text: str, times: dict[str, float], *, day: str) -> tuple[str, dict[str, float]]:
    """``text`` with every measured lesson's "runs in" cell replaced; returns it and the seconds used."""
    used, out = {}, []
    for line in text.splitlines():
        m = ROW.match(line)
        seconds = times.get(f"solutions/{m.group(2)}.ipynb") if m else None
        if seconds is not None:
            used[m.group(2)] = seconds
            line = f"| {m.group(1)} | `{m.group(2)}`{m.group(3)} | {m.group(4)} | ~{seconds:.0f} s (measured {day}) |"
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else ""), used


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("times", type=Path, help="notebook_times.json written by tests/test_notebooks.py")
    ap.add_argument("--write", action="store_true", help="rewrite README.md in place")
    args = ap.parse_args()
    times = json.loads(args.times.read_text())
    new, used = regenerate(README.read_text(), times, day=dt.date.today().isoformat())
    if args.write:
        README.write_text(new)
    else:
        print("\n".join(line for line in new.splitlines() if ROW.match(line)))
    return used


if __name__ == "__main__":
    print(json.dumps(main()))
