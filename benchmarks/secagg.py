"""Benchmark: secure aggregation (lesson 07, issue 7) against the plain sum, in one run.

100 clients, 100,000 parameters each (float32 updates clipped to [-1, 1]), 10% dropouts: half of them after
sharing their keys but before sending their masked input (the server rebuilds their mask keys), half right after
sending it (the server rebuilds their self-mask seeds). Two variants of fedlab.secagg in the same process:

- SecAgg+ (Bell et al. 2020): each client masks with its k = 14 (about 2 log2 n) neighbours on a random graph,
  threshold t = k/2 + 1;
- the full protocol (Bonawitz et al. 2017): masks with all n - 1 peers, threshold t = n/2 + 1.

Timed: per client, phase 2 "masked input" from the float update to the masked vector (fixed-point encoding,
X25519 agreements, ChaCha20 expansion, the adds), median over the clients that send one; the server's unmasking
(sum of the masked vectors, Shamir reconstructions, checks, mask removal), median of 3 repeats; and the plain
float64 sum of the same clients' float32 updates, median of 3. Communication: the bytes each client that
finished the round sent, over the 4 bytes per parameter of the raw float32 update.

Fixed point: 32-bit ring (uint32, so numpy wraps mod 2^32 for free and a masked parameter is 4 bytes, like
float32) and frac_bits = 24, the most that fits: 100 clients x 2^24 < 2^31, so no sum of 100 clipped values can
wrap around; each value is off by at most 2^-25 ~ 3e-8, a sum of 95 by at most ~3e-6.

    python benchmarks/secagg.py                      # 100 clients, 100,000 parameters, seed 0
    python benchmarks/secagg.py --clients 50 --dim 20000

The last line printed is one JSON object (client_mask_ms, client_mask_full_ms, server_unmask_s, plain_sum_s,
comm_expansion, max_abs_error, ...). Targets: client_mask_ms < 15, server_unmask_s < 1, comm_expansion < 1.1,
max_abs_error < 1e-4.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import cryptography
import numpy as np

from fedlab import secagg as S


def _median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(config: S.Config, x: np.ndarray, drops: dict[int, str], *, seed: int) -> dict:
    """One round, phase by phase, timing every client; returns the measurements."""
    n = config.num_clients
    gen = np.random.default_rng(seed)
    sent = np.zeros(n, dtype=np.int64)
    keys, adverts = {}, []
    for u in range(n):
        keys[u], msg = S.advertise_keys(u, config=config, rng=gen)
        adverts.append(msg)
        sent[u] += msg.nbytes
    roster = S.collect_keys(adverts, config=config)
    secrets, share_msgs, share_s = {}, [], []
    for u in range(n):
        t0 = time.perf_counter()
        secrets[u], msg = S.share_keys(keys[u], roster, config=config, rng=gen)
        share_s.append(time.perf_counter() - t0)
        share_msgs.append(msg)
        sent[u] += msg.nbytes
    inbox = S.route_shares(share_msgs, config=config)
    masked, mask_s = [], []
    for u in range(n):
        if drops.get(u) == "masked_input":
            continue
        t0 = time.perf_counter()
        m = S.mask_input(secrets[u], config.encode(x[u]), roster=roster, inbox=inbox[u], config=config)
        mask_s.append(time.perf_counter() - t0)
        masked.append(m)
        sent[u] += m.nbytes
    survivors = S.collect_masked(masked, config=config)
    answers, answer_s = [], []
    for u in survivors:
        if drops.get(u) == "unmask":
            continue
        t0 = time.perf_counter()
        a = S.unmask_shares(secrets[u], inbox=inbox[u], roster=roster, survivors=survivors, config=config)
        answer_s.append(time.perf_counter() - t0)
        answers.append(a)
        sent[u] += a.nbytes
    server_s, agg = _median_time(
        lambda: S.unmask(masked, answers, roster=roster, share_messages=share_msgs, config=config)
    )
    included = list(agg.included)
    exact = bool(np.array_equal(agg.sum, S.plain_sum(x, config=config, clients=included)))
    plain_s, plain = _median_time(lambda: x[included].sum(axis=0, dtype=np.float64))
    finished = [a.client for a in answers]
    return {
        "mask_ms": 1e3 * statistics.median(mask_s),
        "mask_mean_ms": 1e3 * statistics.fmean(mask_s),
        "share_ms": 1e3 * statistics.median(share_s),
        "answer_ms": 1e3 * statistics.median(answer_s),
        "server_s": server_s,
        "plain_s": plain_s,
        "expansion": float(np.mean(sent[finished]) / (4 * config.dim)),
        "bytes_per_client": float(np.mean(sent[finished])),
        "max_abs_error": float(np.max(np.abs(config.decode(agg.sum) - plain))),
        "exact": exact,
        "included": len(included),
        "recovered_keys": len(agg.recovered_keys),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100, help="clients in the round (default 100)")
    ap.add_argument("--dim", type=int, default=100_000, help="parameters per update (default 100,000)")
    ap.add_argument("--dropout", type=float, default=0.1, help="fraction of clients that drop (default 0.1)")
    ap.add_argument("--k", type=int, default=14, help="neighbours per client for SecAgg+ (even; default 14)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data, the dropouts, the graph and the keys")
    args = ap.parse_args()

    n, d = args.clients, args.dim
    gen = np.random.default_rng(args.seed)
    x = np.clip(gen.normal(0.0, 0.5, size=(n, d)), -1.0, 1.0).astype(np.float32)  # clipped updates
    out = gen.choice(n, size=int(round(args.dropout * n)), replace=False)
    drops = {int(u): ("masked_input" if i % 2 == 0 else "unmask") for i, u in enumerate(out)}
    graph = S.neighbour_graph(n, k=args.k, rng=args.seed)
    variants = {
        f"SecAgg+ k={args.k}": S.Config(num_clients=n, threshold=args.k // 2 + 1, dim=d, clip=1.0, neighbours=graph),
        f"full n-1={n - 1}": S.Config(num_clients=n, threshold=n // 2 + 1, dim=d, clip=1.0),
    }
    res = {}
    for name, config in variants.items():
        t0 = time.perf_counter()
        res[name] = run(config, x, drops, seed=args.seed)
        r = res[name]
        print(
            f"{name:>16}: t={config.threshold}, frac_bits={config.frac_bits}; per client: share keys "
            f"{r['share_ms']:.1f} ms, mask {r['mask_ms']:.1f} ms, unmask answer {r['answer_ms']:.1f} ms, "
            f"{r['bytes_per_client']:,.0f} bytes ({r['expansion']:.4f}x raw float32); server {r['server_s']:.3f} s "
            f"= {r['server_s'] / r['plain_s']:.0f}x the plain sum ({r['plain_s'] * 1e3:.1f} ms); "
            f"{r['included']} clients in the sum, {r['recovered_keys']} mask keys rebuilt; exact: {r['exact']}; "
            f"max error {r['max_abs_error']:.1e} (round {time.perf_counter() - t0:.1f} s)"
        )
    g, f = res[f"SecAgg+ k={args.k}"], res[f"full n-1={n - 1}"]
    result = {
        "benchmark": "secagg",
        "num_clients": n,
        "dim": d,
        "dropouts": len(drops),
        "k": args.k,
        "threshold": args.k // 2 + 1,
        "threshold_full": n // 2 + 1,
        "bits": 32,
        "frac_bits": variants[f"SecAgg+ k={args.k}"].frac_bits,
        "client_mask_ms": round(g["mask_ms"], 3),
        "client_mask_mean_ms": round(g["mask_mean_ms"], 3),
        "client_mask_full_ms": round(f["mask_ms"], 3),
        "client_share_ms": round(g["share_ms"], 3),
        "client_share_full_ms": round(f["share_ms"], 3),
        "server_unmask_s": round(g["server_s"], 4),
        "server_unmask_full_s": round(f["server_s"], 4),
        "plain_sum_s": round(g["plain_s"], 5),
        "comm_expansion": round(g["expansion"], 5),
        "comm_expansion_full": round(f["expansion"], 5),
        "max_abs_error": float(f"{max(g['max_abs_error'], f['max_abs_error']):.3e}"),
        "exact": g["exact"] and f["exact"],
        "seed": args.seed,
        "cryptography": cryptography.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "targets": {"client_mask_ms": 15, "server_unmask_s": 1.0, "comm_expansion": 1.1, "max_abs_error": 1e-4},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
