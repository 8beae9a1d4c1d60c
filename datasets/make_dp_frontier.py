r"""Write ``datasets/dp_frontier.json``: the precomputed grid of lesson 08's frontier widget.

Run from the repository root (offline; about 10 minutes on one core of a laptop)::

    python datasets/make_dp_frontier.py            # all seeds of GRID_CONFIG
    python datasets/make_dp_frontier.py --check    # recompute a few cells and compare with the shipped file

Every cell is one seeded DP-FedAvg run (``fedlab.widgets.dp_frontier.run_cell``
with ``GRID_CONFIG``), on one torch thread, so the bytes depend only on the
code and the data. After regenerating, put the printed sha256 into
``GRID_SHA256`` in ``fedlab/widgets/dp_frontier.py`` and into
``datasets/dp_frontier.md``.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from fedlab.widgets import dp_frontier as F

OUT = Path(__file__).resolve().parent / F.GRID_FILE


def main() -> int:
    """Write the grid (or with --check, compare three recomputed cells); returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT), help=f"where to write (default {OUT})")
    ap.add_argument("--check", action="store_true", help="recompute 3 cells and compare with the shipped file")
    args = ap.parse_args()
    if args.check:
        grid = json.loads(OUT.read_bytes())
        cfg = grid["config"]
        bad = 0
        for a, i, j, k in [(0, 0, 2, 2), (1, 7, 1, 1), (2, 9, 3, 3)]:
            cell = F.run_cell(cfg, seed=cfg["seeds"][a], noise_multiplier=cfg["noise_multiplier"][i],
                              clip_norm=cfg["clip_norm"][j], sampling_rate=cfg["sampling_rate"][k])
            same = all(cell[key] == grid[key][a][i][j][k] for key in ("accuracy", "mia_auc", "mia_tpr"))
            bad += not same
            print(f"seed {cfg['seeds'][a]} z {cfg['noise_multiplier'][i]} S {cfg['clip_norm'][j]} "
                  f"q {cfg['sampling_rate'][k]}: {'same' if same else 'DIFFERENT'}")
        return 1 if bad else 0
    t0 = time.perf_counter()

    def progress(done, total):
        if done % 16 == 0 or done == total:
            print(f"{done}/{total} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    raw = F.grid_bytes(F.make_grid(F.GRID_CONFIG, progress=progress))
    Path(args.out).write_bytes(raw)
    print(f"wrote {args.out}: {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
