"""Benchmark: how fast the personal-model explorer answers a move (lesson 12).

Builds the explorer in this process (no browser; ipywidgets without a kernel) on lesson 12's global model
(FedAvg, MLP 8-16-2, 100 rounds, C = 0.1, seed 0). Then replays a fixed, seeded sequence of moves, each
setting ``k`` to a neighbouring value or the user id to the next or previous user, as a learner's arrow
key would. The time of a move is kernel-side: from the control's change to both charts and the readout
being set, measured around ``control.value = new``. The first move to a new ``k`` fine-tunes all 1,200
users (the batched engine) and scores them; later ones are served from the cache and only redraw.

    python benchmarks/personal_explorer.py            # 60 moves, seed 0
    python benchmarks/personal_explorer.py --moves 200 --seed 3

The last line printed is one JSON object (``median_move_s``, ``p95_move_s``, ...). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from slider_moves import every_control_then_random, headline, replay, summary

from fedlab import data, fedavg, models, partition
from fedlab.widgets.personal import PersonalModel, personal_explorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=60, help="number of moves (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the move sequence (default 0)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    health = data.load_health()
    train, test = data.split_by_time(health, test_fraction=0.2)
    clients = [(train.x[p], train.y[p]) for p in partition.by_user(train.user)]
    spec = models.mlp(8, (16,), 2)
    g, _ = fedavg.run(spec, clients, rounds=100, seed=0, fraction=0.1)
    t0 = time.perf_counter()
    widget = personal_explorer(model=PersonalModel(spec, g, train, test))
    build = time.perf_counter() - t0
    gen = np.random.default_rng(args.seed)
    order = every_control_then_random(list(widget.controls), args.moves, gen)
    moved = replay(widget.controls, order, gen, cache_size=widget.model.cached)
    result = {**summary("personal_explorer", args.seed, *moved), "build_s": round(build, 2),
              "machine": platform.machine(), "threads": 1}  # fmt: skip
    print(headline(result, fresh_label="new k (fine-tune all users)", tail=f"build {build:.1f} s"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
