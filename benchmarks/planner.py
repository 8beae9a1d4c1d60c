"""Benchmark: how fast the privacy budget planner answers a slider move (lesson 10, issue 9).

Builds the planner in this process (no browser; ipywidgets without a kernel): loading the grid and
computing every configuration's epsilon with the accountant is the build time. Then replays a fixed,
seeded sequence of slider moves, each setting the target epsilon or the bandwidth budget to a
neighbouring value, as a learner's arrow key would. The time of a move is kernel-side: from the
slider's change to the new readout and chart being set (the masked search, and the chart's rendering
when that pair of settings is new), measured around ``slider.value = new``. Moves that land on a
setting seen before are answered from the cache; both kinds are counted.

    python benchmarks/planner.py              # 60 moves, seed 0
    python benchmarks/planner.py --moves 200 --seed 3

The last line printed is one JSON object (``median_move_s``, ``p95_move_s``, ...).
The target is a median and a 95th percentile under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from slider_moves import headline, replay, summary

from fedlab.widgets import planner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=60, help="number of slider moves (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the move sequence (default 0)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    widget = planner.budget_planner()
    build = time.perf_counter() - t0
    names = list(widget.controls)
    gen = np.random.default_rng(args.seed)
    order = [names[int(i)] for i in gen.integers(0, len(names), size=args.moves)]
    moved = replay(widget.controls, order, gen, cache_size=lambda: len(widget._charts))
    result = {
        **summary("planner", args.seed, *moved),
        "build_s": round(build, 2),
        "machine": platform.machine(),
        "target_median_s": 0.5,
        "target_p95_s": 0.5,
    }
    print(headline(result, fresh_label="new settings", tail=f"build {build:.1f} s"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
