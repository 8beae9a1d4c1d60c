"""Benchmark: how fast the leakage explorer answers a control move (lesson 05, issue 5).

Builds the explorer in this process (no browser; ipywidgets without a kernel),
warms it up (:meth:`LeakageScene.warm_up`, which builds the image-pairing tables
for every batch size and pays torch's first-call costs, then the initial
setting; reported as ``warm_up_s`` and excluded from the moves), then replays a
fixed, seeded sequence of control moves. Each move sets one
control to a neighbouring value, as a learner's keyboard or mouse would; every
control is moved. The time of a move is kernel-side: from the control's change
to the new images and readout being set (attack and PNG rendering included),
measured around the assignment ``control.value = new``. Moves that land on a
setting seen before are answered from the cache; both kinds are counted.

    python benchmarks/leakage_explorer.py              # 60 moves, seed 0
    python benchmarks/leakage_explorer.py --moves 200 --seed 3
    python benchmarks/leakage_explorer.py --start batch_size=8,local_steps=5   # from the slowest corner
    python benchmarks/leakage_explorer.py --backend torch                      # fedlab.attacks' autograd attack

The last line printed is one JSON object (``median_move_s``, ``p95_move_s``, ...).
The target (issue 5) is every move under 0.3 s: ``p95_move_s`` (and so the
median) under 0.3 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import numpy as np
import torch

from fedlab.widgets import leakage


def _neighbour(widget, gen: np.random.Generator):
    """A value one step away from the widget's current one (IntSlider, SelectionSlider, ToggleButtons)."""
    if hasattr(widget, "options"):
        values = [v for _, v in widget.options] if isinstance(widget.options[0], tuple) else list(widget.options)
        i = values.index(widget.value)
        steps = [j for j in (i - 1, i + 1) if 0 <= j < len(values)]
        return values[int(gen.choice(steps))]
    steps = [v for v in (widget.value - 1, widget.value + 1) if widget.min <= v <= widget.max]
    return int(gen.choice(steps))


def _parse_start(text: str) -> leakage.Settings:
    """``"batch_size=8,local_steps=5"`` -> ``Settings(batch_size=8, local_steps=5)`` (types from the defaults)."""
    default, values = leakage.Settings(), {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in leakage.CONTROLS:
            raise SystemExit(f"--start: {name!r} is not a control; use one of {', '.join(leakage.CONTROLS)}")
        values[name] = type(getattr(default, name))(value)
    return dataclasses.replace(default, **values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=60, help="number of control moves (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the move sequence (default 0)")
    ap.add_argument(
        "--start", default="", help="starting settings, e.g. batch_size=8,local_steps=5 (default: the lesson's)"
    )
    ap.add_argument("--backend", default="numpy", choices=leakage.BACKENDS, help="the scene's attack backend")
    args = ap.parse_args()
    start = _parse_start(args.start)

    t0 = time.perf_counter()
    scene = leakage.LeakageScene(seed=0, backend=args.backend)
    explorer = leakage.leakage_explorer(scene=scene, settings=start)
    warm_up = time.perf_counter() - t0
    names = list(explorer.controls)
    gen = np.random.default_rng(args.seed)
    # every control at least once, then random ones
    order = names + [names[int(i)] for i in gen.integers(0, len(names), size=max(0, args.moves - len(names)))]
    order = [order[int(i)] for i in gen.permutation(len(order))]
    times, computed, per_control = [], [], {n: [] for n in names}
    for name in order:
        widget = explorer.controls[name]
        new = _neighbour(widget, gen)
        fresh_setting = not explorer.scene.is_cached(dataclasses.replace(explorer.settings(), **{name: new}))
        t = time.perf_counter()
        widget.value = new
        dt = time.perf_counter() - t
        times.append(dt)
        computed.append(fresh_setting)
        per_control[name].append(dt)
    times_a = np.array(times)
    fresh = times_a[np.array(computed)]
    result = {
        "benchmark": "leakage_explorer",
        "moves": len(times),
        "seed": args.seed,
        "median_move_s": round(float(np.median(times_a)), 4),
        "p95_move_s": round(float(np.percentile(times_a, 95)), 4),
        "max_move_s": round(float(times_a.max()), 4),
        "fresh_moves": int(fresh.size),
        "median_fresh_move_s": round(float(np.median(fresh)), 4) if fresh.size else None,
        "p95_fresh_move_s": round(float(np.percentile(fresh, 95)), 4) if fresh.size else None,
        "median_by_control_s": {n: round(statistics.median(v), 4) for n, v in per_control.items() if v},
        "warm_up_s": round(warm_up, 2),
        "scene_warm_up_s": round(scene.warm_up_seconds, 2),
        "start": {k: v for k, v in dataclasses.asdict(start).items() if v != getattr(leakage.Settings(), k)},
        "backend": args.backend,
        "torch_threads_during_attack": 1,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "target_median_s": 0.3,
        "target_p95_s": 0.3,
    }
    print(
        f"{len(times)} moves: median {result['median_move_s'] * 1e3:.0f} ms, p95 {result['p95_move_s'] * 1e3:.0f} ms, "
        f"max {result['max_move_s'] * 1e3:.0f} ms ({fresh.size} computed, {len(times) - fresh.size} from the cache); "
        f"warm-up {warm_up:.1f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
