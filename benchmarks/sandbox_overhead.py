"""Benchmark: what the bubblewrap sandbox (fedlab/sandbox.py, issue 17) costs a graded kernel, in one run.

For each of ``--repeats`` rounds, alternately with and without the sandbox (same process, same machine state):
start a kernel through jupyter_client, wait until it answers, run a small lesson-like computation (``import
torch, numpy, fedlab``, a few steps of a linear model on 512 x 20 float32, a FedAvg-style weighted mean), shut
it down. Timed separately: ``start`` (start_kernel to ready), ``compute`` (the cell) and ``total`` (both plus the
shutdown). Medians over the rounds; the ratio is sandbox over no sandbox.

    python benchmarks/sandbox_overhead.py                # 5 rounds
    python benchmarks/sandbox_overhead.py --repeats 3

The last line printed is one JSON object (start_s, start_sandbox_s, compute_s, compute_sandbox_s, total_s,
total_sandbox_s, ratio_total, ratio_start, ...). Target (issue 17): the sandbox costs <= 1.3x per kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedlab import sandbox  # noqa: E402

CELL = """
import numpy as np, torch, fedlab
g = torch.Generator().manual_seed(0)
x = torch.randn(512, 20, generator=g)
y = x @ torch.randn(20, 1, generator=g)
w = torch.zeros(20, 1, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1)
for _ in range(50):
    opt.zero_grad()
    loss = ((x @ w - y) ** 2).mean()
    loss.backward()
    opt.step()
updates = np.stack([w.detach().numpy().ravel() * k for k in range(1, 6)])
print(float(loss), np.average(updates, axis=0, weights=[1, 2, 3, 4, 5]).sum())
"""


def one_kernel(boxed: bool) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    box = sandbox.Sandbox(course_root=ROOT) if boxed else None
    km = sandbox.local_kernel_manager(box)
    began = time.perf_counter()
    quiet = {} if box else {"stderr": subprocess.DEVNULL}  # the sandbox keeps the kernel's stderr in its log
    km.start_kernel(env=env, **quiet)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    ready = time.perf_counter()
    reply = kc.execute_interactive(CELL, timeout=300, output_hook=lambda msg: None)
    computed = time.perf_counter()
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"the cell failed ({'sandbox' if boxed else 'no sandbox'}): {reply['content']}")
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    done = time.perf_counter()
    if box is not None:
        box.cleanup()
    return {"start": ready - began, "compute": computed - ready, "total": done - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 1:
        raise ValueError(f"--repeats={args.repeats}; allowed: an int >= 1")
    info = sandbox.probe()
    if info.kind != "bwrap":
        raise SystemExit(f"no sandbox here: {info.reason}")
    one_kernel(False)  # warm the file cache for both
    runs = {False: [], True: []}
    for _ in range(args.repeats):
        for boxed in (False, True):
            runs[boxed].append(one_kernel(boxed))
    med = {
        boxed: {k: statistics.median(r[k] for r in runs[boxed]) for k in ("start", "compute", "total")}
        for boxed in runs
    }
    for key in ("start", "compute", "total"):
        print(
            f"{key:8s} no sandbox {med[False][key]:6.2f} s   sandbox {med[True][key]:6.2f} s   "
            f"ratio {med[True][key] / med[False][key]:.2f}x"
        )
    result = {
        **{f"{k}_s": round(med[False][k], 3) for k in ("start", "compute", "total")},
        **{f"{k}_sandbox_s": round(med[True][k], 3) for k in ("start", "compute", "total")},
        "ratio_start": round(med[True]["start"] / med[False]["start"], 3),
        "ratio_compute": round(med[True]["compute"] / med[False]["compute"], 3),
        "ratio_total": round(med[True]["total"] / med[False]["total"], 3),
        "repeats": args.repeats,
        "root": os.geteuid() == 0,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "targets": {"ratio_total": 1.3},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
