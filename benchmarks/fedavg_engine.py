"""Benchmark: the batched simulation engine against the plain per-client PyTorch loop.

Task (issue 2): digits, 100 IID clients, MLP 64-128-10, E=1, B=10, lr=0.1,
C=1, 20 rounds. Both engines run in this process on the same seed and the same
thread count, so they see the same machine. The FLOP floor is the work of one
round (3 x forward matmul FLOPs x examples visited) divided by the median
throughput of a 2048x2048 float32 ``torch.mm`` at the engine's thread count,
measured here too.

    python benchmarks/fedavg_engine.py            # engine's default: 1 thread
    python benchmarks/fedavg_engine.py --threads 2

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fedlab import data, fedavg, models, partition


def matmul_gflops(threads: int, *, n: int = 2048, repeats: int = 9) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads for both engines (default 1, the engine's default)"
    )
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()

    train, test = data.train_test_split(data.load_digits(), test_fraction=0.2, seed=0)
    parts = partition.iid(len(train), num_clients=100, rng=0)
    clients = [(train.x[p], train.y[p]) for p in parts]
    spec = models.mlp(64, (128,), 10)
    kw = dict(
        rounds=args.rounds,
        seed=0,
        fraction=1.0,
        epochs=1,
        batch_size=10,
        lr=0.1,
        test=(test.x, test.y),
        threads=args.threads,
    )

    params_e, hist_e = fedavg.run(spec, clients, engine="batched", **kw)
    params_l, hist_l = fedavg.run(spec, clients, engine="loop", **kw)
    engine_s = statistics.median(hist_e.column("seconds")[1:])
    loop_s = statistics.median(hist_l.column("seconds")[1:])
    acc_e, acc_l = hist_e.final_accuracy, hist_l.final_accuracy
    if abs(acc_e - acc_l) > 0.01:
        raise SystemExit(f"engine accuracy {acc_e:.4f} differs from the loop's {acc_l:.4f}")

    examples = sum(len(y) for _, y in clients) * kw["epochs"]
    widths = (spec.in_features, *spec.hidden, spec.num_classes)
    fwd_flops = sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    round_flops = 3 * fwd_flops * examples
    gflops = matmul_gflops(args.threads)
    floor_s = round_flops / (gflops * 1e9)
    print(
        f"engine {engine_s * 1e3:.2f} ms/round, loop {loop_s * 1e3:.1f} ms/round, "
        f"floor {floor_s * 1e3:.2f} ms ({gflops:.0f} GFLOP/s mm at {args.threads} thread(s))"
    )
    print(
        json.dumps(
            {
                "engine_round_s": engine_s,
                "loop_round_s": loop_s,
                "speedup_vs_loop": loop_s / engine_s,
                "flop_floor_round_s": floor_s,
                "engine_over_floor": engine_s / floor_s,
                "threads": args.threads,
                "mm_gflops": gflops,
                "engine_accuracy": acc_e,
                "loop_accuracy": acc_l,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
