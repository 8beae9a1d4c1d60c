"""Benchmark: what the defence against a lying server costs (issue 20, part B), in one run.

The same round of secure aggregation - 50 phones, 20,000 parameters, threshold t = n/2 + 1, 4% of the phones
dropping before their masked input and 4% in the consistency round - run two ways by fedlab.secagg_malicious.run_round
with the same inputs and keys:

- undefended: lesson 07's semi-honest protocol (fedlab.secagg's messages and checks);
- defended: Bonawitz et al. 2017's active-adversary version: Ed25519 signatures on the advertised keys, the
  consistency round (every survivor signs the survivor list; each phone checks t or more signatures before it
  reveals a share), phones that answer once.

Reported: `consistency_round_bytes`, what a phone *sends* in the consistency round (its id and a 64-byte
signature), counted as fedlab.secagg counts protocol bytes (bytes sent per phone); what it receives in that round
(the list and the signatures, `consistency_round_download_bytes`); the signature bytes over the round; the bytes a
phone sends in the whole round both ways; the wall time of the whole round both ways (median of `--repeats`,
interleaved) and their ratio; what a phone spends in the consistency round (sign once, verify the signatures);
and, for part B.6, the sybil figures of a distributed-DP plan (the real phone's noise share against the plan's).

    python benchmarks/secagg_consistency.py
    python benchmarks/secagg_consistency.py --clients 20 --dim 5000 --repeats 3

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import cryptography
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedlab import distributed_dp as D
from fedlab import secagg as S
from fedlab import secagg_malicious as M


def consistency_phone_ms(n: int, *, repeats: int = 20) -> float:
    """Median ms a phone spends in the consistency round: sign the list of ``n`` survivors, verify ``n`` signatures."""
    keys = [Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(n)]
    pubs = [Ed25519PublicKey.from_public_bytes(k.public_key().public_bytes_raw()) for k in keys]
    message = M.survivors_message(range(n), round_id=0)
    sigs = [k.sign(message) for k in keys]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        keys[0].sign(message)
        for p, s in zip(pubs, sigs):
            p.verify(s, message)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--dim", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.clients
    config = S.Config(num_clients=n, threshold=n // 2 + 1, dim=args.dim)
    x = np.random.default_rng(args.seed).uniform(-1, 1, (n, args.dim)).astype(np.float32)
    k = max(1, n // 25)
    drops = {u: "masked_input" for u in range(k)} | {u: "consistency" for u in range(k, 2 * k)}
    devices = M.device_keys(n, rng=args.seed)
    times = {False: [], True: []}
    rounds = {}
    for rep in range(args.repeats):
        for defended in (False, True):  # interleaved, same keys and inputs
            r = M.run_round(x, config=config, defended=defended, rng=args.seed + rep, seeded_keys=True,
                            dropouts=drops, devices=devices)  # fmt: skip
            times[defended].append(r.seconds)
            rounds[defended] = r
    plain, signed = rounds[False], rounds[True]
    expected = S.plain_sum(x, config=config, clients=signed.included)
    exact = bool(np.array_equal(signed.aggregate.sum, expected) and np.array_equal(plain.aggregate.sum, expected))
    finished = list(signed.participants["unmask"])
    cons = signed.consistency_bytes[finished]
    u3, u4 = len(signed.included), len(signed.participants["consistency"])
    t_plain, t_signed = statistics.median(times[False]), statistics.median(times[True])
    plan = D.make_plan(dim=args.dim, clip_norm=1.0, noise_multiplier=1.0, cohort=n, min_survivors=n - 2 * k,
                       bits=24)  # fmt: skip
    sybil = M.sybil_guarantee(plan, q=0.01, rounds=100, delta=1e-5)
    out = {
        "clients": n,
        "threshold": config.threshold,
        "dim": args.dim,
        "survivors": u3,
        "signers": u4,
        "sum_exact": exact,
        "consistency_round_bytes": int(np.median(cons)),
        "consistency_round_download_bytes": M.consistency_download_bytes(survivors=u3, signers=u4),
        "signature_bytes_per_phone": int(np.median(signed.signature_bytes[finished])),
        "bytes_per_phone_undefended": int(np.median(plain.bytes_sent[finished])),
        "bytes_per_phone_defended": int(np.median(signed.bytes_sent[finished])),
        "defence_bytes_overhead": float(
            np.median(signed.bytes_sent[finished]) / np.median(plain.bytes_sent[finished]) - 1
        ),
        "round_s_undefended": t_plain,
        "round_s_defended": t_signed,
        "round_time_ratio": t_signed / t_plain,
        "consistency_phone_ms": consistency_phone_ms(u3),
        "sybil_variance_fraction": sybil.variance_fraction,
        "sybil_noise_multiplier": sybil.noise_multiplier,
        "sybil_planned_noise_multiplier": sybil.planned_noise_multiplier,
        "sybil_epsilon_q1": sybil.epsilon,
        "planned_epsilon": sybil.planned_epsilon,
        "machine": platform.machine(),
        "cryptography": cryptography.__version__,
    }
    for key, value in out.items():
        print(f"{key:36s} {value}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
