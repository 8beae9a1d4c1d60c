"""Benchmark (partial, issue 20): the phone's cost of distributed DP against lesson 10's central pipeline, in one run.

Per phone per round, for a vector of ``dim`` parameters (lesson 10's model, logistic regression on 8 features plus
a bias for 2 classes = 18 parameters, and a 10,000-parameter vector):

- ``central``: lesson 10's client side - L2 clip (``fedlab.dp.clip_update``), fixed-point encode into a 32-bit ring
  (``fedlab.secagg.fixed_point_encode`` at ``max_frac_bits`` for the cohort), then ``fedlab.secagg.mask_vector``;
- ``distributed``: ``fedlab.distributed_dp.encode_client`` (clip, randomized Hadamard rotation, scale, conditional
  randomized rounding, Skellam share, mod 2^bits) for the plan that reaches the same epsilon, then the same
  ``mask_vector`` on the padded vector in the smaller ring.

Both mask with ``k`` pairwise seeds and a self-mask seed (SecAgg+ with k = 2 log2(cohort) neighbours), so the
difference is the encoding. Times are medians over the cohort's phones (a shared 2-core machine: read the ratio).
Also reported: the noise multipliers that reach epsilon = 2 at delta = 1e-5 (q, rounds below) for the central
Gaussian (``fedlab.dp``) and for the distributed Skellam plan (``fedlab.distributed_dp``), bits per coordinate,
bytes of one masked vector, and the wrap-around rate measured on ``--trials`` secure sums of the whole cohort with
aligned updates (the worst case) against the plan's bound (more sums for a small vector, at least ~1e5
coordinates in all).

Not measured yet (the lesson and capstone ``noise="distributed"`` are not built): ``central_acc``,
``distributed_acc`` and ``consistency_round_bytes`` are omitted.

    python benchmarks/distributed_dp.py
    python benchmarks/distributed_dp.py --cohort 100 --bits 18 --trials 20

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import numpy as np

from fedlab import distributed_dp as D
from fedlab import dp, secagg


def _masks(n: int, k: int, rng: np.random.Generator) -> list[dict[int, bytes]]:
    """Pairwise seeds for a ring of neighbours: phone u masks with its k nearest indices (k/2 each side)."""
    seeds: dict[tuple[int, int], bytes] = {}
    out = []
    for u in range(n):
        nb = {(u + j) % n for j in range(-(k // 2), k // 2 + 1)} - {u}
        row = {}
        for v in nb:
            key = (min(u, v), max(u, v))
            if key not in seeds:
                seeds[key] = rng.bytes(32)
            row[v] = seeds[key]
        out.append(row)
    return out


def measure(dim: int, *, cohort: int, min_survivors: int, bits: int, q: float, rounds: int, epsilon: float,
            delta: float, trials: int, seed: int) -> dict:  # fmt: skip
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(cohort, dim)) * 0.5
    clip = 1.0
    kw = dict(dim=dim, clip_norm=clip, cohort=cohort, min_survivors=min_survivors, bits=bits)
    t0 = time.perf_counter()
    z_central = dp.noise_multiplier_for(epsilon=epsilon, q=q, steps=rounds, delta=delta)
    z_dist = D.noise_multiplier_for(epsilon=epsilon, delta=delta, q=q, rounds=rounds, **kw)
    calibrate_s = time.perf_counter() - t0
    plan = D.make_plan(noise_multiplier=z_dist, **kw)
    k = min(cohort - 1, 2 * math.ceil(math.log2(cohort)))
    pairs = _masks(cohort, k, rng)
    selfs = [rng.bytes(32) for _ in range(cohort)]
    frac = secagg.max_frac_bits(num_clients=cohort, clip=clip, bits=32)
    signs = D.rotation_signs(dim, rng=seed)

    central_ms, dist_ms, central_enc_ms, dist_enc_ms = [], [], [], []
    for u in range(cohort):
        t0 = time.perf_counter()
        c = dp.clip_update([x[u]], max_norm=clip)[0]
        enc = secagg.fixed_point_encode(c, clip=clip, frac_bits=frac, bits=32)
        t1 = time.perf_counter()
        secagg.mask_vector(enc, client=u, pair_seeds=pairs[u], self_seed=selfs[u], bits=32)
        t2 = time.perf_counter()
        central_enc_ms.append(1e3 * (t1 - t0))
        central_ms.append(1e3 * (t2 - t0))
        t0 = time.perf_counter()
        enc = D.encode_client(x[u], plan=plan, signs=signs, rng=np.random.default_rng([seed, u]))
        t1 = time.perf_counter()
        secagg.mask_vector(enc, client=u, pair_seeds=pairs[u], self_seed=selfs[u], bits=plan.bits)
        t2 = time.perf_counter()
        dist_enc_ms.append(1e3 * (t1 - t0))
        dist_ms.append(1e3 * (t2 - t0))

    aligned = np.ones((cohort, dim))
    wraps = []
    sums = max(trials, min(1000, 100_000 // plan.padded_dim))  # at least ~1e5 coordinates for a small model
    for t in range(sums):
        s = D.rotation_signs(dim, rng=seed + 1 + t)
        gens = [np.random.default_rng([seed, t, u]) for u in range(cohort)]
        raw = D.encode_cohort(aligned, plan=plan, signs=s, rngs=gens, modular=False).sum(0)
        ring = D.centered(D.modular_clip(raw, bits=plan.bits), bits=plan.bits)
        wraps.append(float(np.mean(raw != ring)))
    bound = D.wrap_probability(scale=plan.scale, dim=dim, clip_norm=clip, clients=cohort,
                               local_variance=plan.local_variance, bits=plan.bits)  # fmt: skip
    return {
        "dim": dim,
        "padded_dim": plan.padded_dim,
        "bits": plan.bits,
        "bytes_per_phone_central": math.ceil(dim * 32 / 8),
        "bytes_per_phone_distributed": plan.bytes_per_phone,
        "scale": plan.scale,
        "z_central": z_central,
        "z_distributed": z_dist,
        "epsilon_distributed": D.epsilon(plan, q=q, rounds=rounds, delta=delta),
        "epsilon_if_half_the_planned_survivors": D.epsilon(
            plan, q=q, rounds=rounds, delta=delta, survivors=max(2, min_survivors // 2)
        ),  # fmt: skip
        "wrap_rate": statistics.mean(wraps),
        "wrap_bound": bound,
        "wrap_coordinates_measured": sums * plan.padded_dim,
        "client_ms_central": statistics.median(central_ms),
        "client_ms_distributed": statistics.median(dist_ms),
        "client_encode_ms_central": statistics.median(central_enc_ms),
        "client_encode_ms_distributed": statistics.median(dist_enc_ms),
        "calibrate_s": calibrate_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=int, default=60)
    ap.add_argument("--min-survivors", type=int, default=48)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--q", type=float, default=0.05)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--epsilon", type=float, default=2.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {}
    for name, dim in (("lesson10", 18), ("large", 10_000)):
        r = measure(dim, cohort=args.cohort, min_survivors=args.min_survivors, bits=args.bits, q=args.q,
                    rounds=args.rounds, epsilon=args.epsilon, delta=args.delta, trials=args.trials,
                    seed=args.seed)  # fmt: skip
        results[name] = r
        print(f"{name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    head = results["lesson10"]
    out = {
        "bits": head["bits"],
        "wrap_rate": max(r["wrap_rate"] for r in results.values()),
        "client_ms_central": head["client_ms_central"],
        "client_ms_distributed": head["client_ms_distributed"],
        "client_ratio": head["client_ms_distributed"] / head["client_ms_central"],
        "client_ratio_large": results["large"]["client_ms_distributed"] / results["large"]["client_ms_central"],
        "z_central": head["z_central"],
        "z_distributed": head["z_distributed"],
        "bytes_per_phone_distributed": head["bytes_per_phone_distributed"],
        "results": results,
        "config": {**vars(args), "python": platform.python_version(), "numpy": np.__version__},
        "omitted": ["central_acc", "distributed_acc", "consistency_round_bytes"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
