"""Benchmark: how fast the privacy-utility-leakage frontier answers a slider move (lesson 08, issue 8).

Builds the frontier widget in this process (no browser; ipywidgets without a
kernel), warms it up (the starting setting, which also pays torch's and
matplotlib's first-call costs), then replays a fixed, seeded sequence of
slider moves. Each move sets one of the four sliders (noise multiplier,
clipping norm, sampling rate, rounds) to a neighbouring value, as a learner's
arrow key would; every slider is moved. The time of a move is kernel-side:
from the slider's change to the new readout, chart and images being set
(epsilon from the accountant, the grid lookup, the leakage attack when that
setting is new, and the PNG rendering), measured around the assignment
``slider.value = new``. Moves that land on a setting seen before are answered
from the caches; both kinds are counted.

    python benchmarks/dp_frontier.py              # 60 moves, seed 0
    python benchmarks/dp_frontier.py --moves 200 --seed 3

The last line printed is one JSON object (``median_move_s``, ``p95_move_s``, ...).
The target is a median and a 95th percentile under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from slider_moves import every_control_then_random, headline, replay, summary

from fedlab.widgets import dp_frontier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=60, help="number of slider moves (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the move sequence (default 0)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    widget = dp_frontier.dp_frontier(seed=0)
    warm_up = time.perf_counter() - t0
    gen = np.random.default_rng(args.seed)
    order = every_control_then_random(list(widget.controls), args.moves, gen)
    moved = replay(widget.controls, order, gen, cache_size=lambda: len(widget.model._points))
    result = {
        **summary("dp_frontier", args.seed, *moved),
        "warm_up_s": round(warm_up, 2),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "target_median_s": 0.5,
        "target_p95_s": 0.5,
    }
    print(headline(result, fresh_label="new settings", tail=f"warm-up {warm_up:.1f} s"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
