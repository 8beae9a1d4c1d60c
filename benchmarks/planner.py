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
import statistics
import time

import numpy as np

from fedlab.widgets import planner


def _neighbour(widget, gen: np.random.Generator):
    """A value one step away from the slider's current one."""
    values = [v for _, v in widget.options]
    i = values.index(widget.value)
    steps = [j for j in (i - 1, i + 1) if 0 <= j < len(values)]
    return values[int(gen.choice(steps))]


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
    times, fresh, per_control = [], [], {n: [] for n in names}
    for name in order:
        w = widget.controls[name]
        new = _neighbour(w, gen)
        seen = len(widget._charts)
        t = time.perf_counter()
        w.value = new
        dt = time.perf_counter() - t
        times.append(dt)
        fresh.append(len(widget._charts) > seen)
        per_control[name].append(dt)
    times_a = np.array(times)
    fresh_a = times_a[np.array(fresh)]
    result = {
        "benchmark": "planner",
        "moves": len(times),
        "seed": args.seed,
        "median_move_s": round(float(np.median(times_a)), 4),
        "p95_move_s": round(float(np.percentile(times_a, 95)), 4),
        "max_move_s": round(float(times_a.max()), 4),
        "fresh_moves": int(fresh_a.size),
        "median_fresh_move_s": round(float(np.median(fresh_a)), 4) if fresh_a.size else None,
        "p95_fresh_move_s": round(float(np.percentile(fresh_a, 95)), 4) if fresh_a.size else None,
        "median_by_control_s": {n: round(statistics.median(v), 4) for n, v in per_control.items() if v},
        "build_s": round(build, 2),
        "machine": platform.machine(),
        "target_median_s": 0.5,
        "target_p95_s": 0.5,
    }
    print(
        f"{len(times)} moves: median {result['median_move_s'] * 1e3:.0f} ms, p95 {result['p95_move_s'] * 1e3:.0f} ms, "
        f"max {result['max_move_s'] * 1e3:.0f} ms ({fresh_a.size} new settings, {len(times) - fresh_a.size} from the "
        f"cache); build {build:.1f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
