r"""Write ``datasets/capstone_planner.json``: the precomputed grid of lesson 10's privacy budget planner.

Run from the repository root (offline; about 5 minutes on one core of a laptop)::

    python datasets/make_capstone_planner.py            # every cell of GRID_CONFIG
    python datasets/make_capstone_planner.py --check    # recompute a few cells and compare with the shipped file

Every cell is one seeded run of the capstone pipeline (``fedlab.widgets.planner.run_cell`` with
``GRID_CONFIG``), on one torch thread, so the bytes depend only on the code and the data. After
regenerating, put the printed sha256 into ``GRID_SHA256`` in ``fedlab/widgets/planner.py`` and into
``datasets/capstone_planner.md``.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from fedlab.widgets import planner as F

OUT = Path(__file__).resolve().parent / F.GRID_FILE


def main() -> int:
    """Write the grid (or with --check, compare three recomputed cells); returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT), help=f"where to write (default {OUT})")
    ap.add_argument("--check", action="store_true", help="recompute 3 cells and compare with the shipped file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check:
        grid = json.loads(OUT.read_bytes())
        cfg = grid["config"]
        bad = 0
        for a, c, i, b in [(0, 0, 2, 1), (1, 1, 4, 0), (0, 2, 5, 3)]:
            cell = F.run_cell(cfg, seed=cfg["seeds"][a], clients_per_round=cfg["clients_per_round"][c],
                              noise_multiplier=cfg["noise_multiplier"][i], bits=cfg["bits"][b])
            same = (cell["accuracy"] == grid["accuracy"][a][c][i][b]
                    and cell["bytes_per_user"] == grid["bytes_per_user"][a][c][i][b])
            bad += not same
            print(f"seed {cfg['seeds'][a]} qN {cfg['clients_per_round'][c]} z {cfg['noise_multiplier'][i]} "
                  f"bits {cfg['bits'][b]}: {'same' if same else 'DIFFERENT'}")
        return 1 if bad else 0
    t0 = time.perf_counter()

    def progress(done, total):
        if done % 8 == 0 or done == total:
            print(f"{done}/{total} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    raw = F.grid_bytes(F.make_grid(F.GRID_CONFIG, progress=progress))
    Path(args.out).write_bytes(raw)
    print(f"wrote {args.out}: {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()} "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
