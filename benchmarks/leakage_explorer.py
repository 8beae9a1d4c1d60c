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
import time

import numpy as np
import torch
from slider_moves import every_control_then_random, headline, replay, summary

from fedlab.widgets import leakage


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
    gen = np.random.default_rng(args.seed)
    order = every_control_then_random(list(explorer.controls), args.moves, gen)

    def will_compute(name, new):
        return not explorer.scene.is_cached(dataclasses.replace(explorer.settings(), **{name: new}))

    moved = replay(explorer.controls, order, gen, will_compute=will_compute)
    result = {
        **summary("leakage_explorer", args.seed, *moved),
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
    print(headline(result, fresh_label="computed", tail=f"warm-up {warm_up:.1f} s"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
