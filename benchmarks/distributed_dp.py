"""Benchmark (issue 20): distributed DP against lesson 10's central pipeline, same task, same epsilon, one run.

Lesson 10's setting: the health app's 1,200 users, logistic regression on 8 features (18 parameters), Poisson
sampling of 30 users a round, clip norm 0.5, 200 rounds, 5% dropouts at a uniform phase of the protocol, a 16-bit
ring, epsilon = 2 at delta = 1e-5 (the run's valid epsilon, refusal term included: ``capstone.epsilon``).

- ``central``: ``capstone.run(..., noise="central")`` (lesson 10: the server unmasks the exact sum, adds the
  Gaussian), ``z`` from ``capstone.noise_multiplier_for``;
- ``distributed``: ``capstone.run(..., noise="distributed")`` (lesson 13: every phone clips, rotates, rounds, adds its
  Skellam share and reduces mod 2^16 before masking; the server decodes a noised sum), ``z`` and ``min_survivors``
  from ``capstone.noise_multiplier_for(..., noise="distributed")`` and ``capstone.min_survivors_for``.

Both runs use ``secure=False``, the protocol's exact plain equivalent (``tests/test_capstone.py`` checks it equals the
real protocol bit for bit, central and distributed), over ``--seeds`` seeds; accuracies are the final test accuracy
(fractions), means over seeds. ``wrap_rate`` is measured in those runs (every coordinate of every released sum,
against the un-wrapped integer sum); ``wrap_rate_worst_case`` on ``--wrap-sums`` sums of the plan's whole cohort cap
with aligned updates at the clip norm (the case the plan's bound is made for), next to that bound.

Phone time, per phone per round, in the same process, interleaved, median over the cohort's phones and
``--repeats``: what lesson 07's phone does in its ``masked_input`` phase, for a cohort of 30 on the full graph:

- central: ``dp.clip_update`` -> flatten -> ``Config.encode`` (fixed point) -> ``secagg.mask_input`` (pairwise seeds
  by X25519 with every partner, PRG masks);
- distributed: ``distributed_dp.encode_client`` (clip, rotate, round, Skellam share, mod 2^bits) -> the same
  ``secagg.mask_input`` on the ``d'`` ring values.

Also reported: the same without key agreement (``mask_vector`` with the seeds precomputed: ``*_prg_only``), the
encoding alone, the same three for a 10,000-parameter model (``large``), bits per coordinate, values and bytes per
phone, the consistency round's bytes per phone (``fedlab.secagg_malicious``, a defended round of the same cohort), and
what the server sees (the std of the noise in its view of the sum, per coordinate).

    python benchmarks/distributed_dp.py
    python benchmarks/distributed_dp.py --seeds 5 --repeats 10

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

from fedlab import capstone, data, dp, models, partition
from fedlab import distributed_dp as D
from fedlab import params as P
from fedlab import secagg as S
from fedlab import secagg_malicious as M

ROUNDS, S_CLIP, DROPOUT, BITS, EPS, DELTA, PER_ROUND = 200, 0.5, 0.05, 16, 2.0, 1e-5, 30


def lesson10():
    h = data.load_health()
    tr, te = data.split_by_time(h, test_fraction=0.2)
    clients = [(tr.x[p], tr.y[p]) for p in partition.by_user(tr.user)]
    return clients, (te.x, te.y), models.logreg(tr.x.shape[1], 2)


def accuracies(clients, test, spec, *, seeds: int, z_c: float, z_d: float, m: int) -> dict:
    n = len(clients)
    q = PER_ROUND / n
    out = {"central": [], "distributed": []}
    hists = {}
    for seed in range(seeds):
        for noise, z in (("central", z_c), ("distributed", z_d)):
            extra = {"min_survivors": m} if noise == "distributed" else {}
            t0 = time.perf_counter()
            _, h = capstone.run(spec, clients, rounds=ROUNDS, seed=seed, q=q, clip_norm=S_CLIP, noise_multiplier=z,
                                bits=BITS, dropout_rate=DROPOUT, secure=False, test=test, eval_every=ROUNDS,
                                noise=noise, **extra)  # fmt: skip
            out[noise].append(float(h.test_accuracy[-1]))
            hists.setdefault(noise, []).append(h)
            print(f"seed {seed} {noise}: accuracy {h.test_accuracy[-1]:.4f}, refused {int(h.refused.sum())}, "
                  f"wrapped {int(h.wrapped.sum())}, {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    return {"acc": out, "hists": hists}


def _protocol(n: int, config: S.Config, seed: int):
    """Phases 0 and 1 of lesson 07's protocol for ``n`` phones: what a phone holds when it masks its input."""
    keys, adverts = {}, []
    for u in range(n):
        keys[u], msg = S.advertise_keys(u, config=config, rng=np.random.default_rng([seed, u, 0]))
        adverts.append(msg)
    roster = S.collect_keys(adverts, config=config)
    secrets, shares = {}, []
    for u in range(n):
        secrets[u], msg = S.share_keys(keys[u], roster, config=config, rng=np.random.default_rng([seed, u, 1]))
        shares.append(msg)
    inbox = S.route_shares(shares, config=config)
    peers = {a.client: a for a in roster}
    seeds = [
        {e.sender: S.pairwise_seed(secrets[u].keys.s_sk, peers[e.sender].s_pk, me=u, peer=e.sender) for e in inbox[u]}
        for u in range(n)
    ]
    return secrets, roster, inbox, seeds


def phone_ms(dim: int, *, z: float, m: int, num_users: int, repeats: int, seed: int) -> dict:
    n = PER_ROUND
    rng = np.random.default_rng(seed)
    deltas = [[(0.3 * rng.standard_normal(dim)).astype(np.float32)] for _ in range(n)]
    plan = capstone.distributed_plan(dim=dim, clip_norm=S_CLIP, noise_multiplier=z, num_users=num_users,
                                     q=PER_ROUND / num_users, bits=BITS, min_survivors=m)  # fmt: skip
    signs = D.rotation_signs(dim, rng=seed)
    t = capstone.threshold_for(n)
    cfg_c = S.Config(num_clients=n, threshold=t, dim=dim, clip=S_CLIP, bits=BITS)
    cfg_d = S.Config(num_clients=n, threshold=t, dim=plan.padded_dim, clip=1.0, frac_bits=0, bits=BITS)
    sec_c, roster_c, inbox_c, seeds_c = _protocol(n, cfg_c, seed)
    sec_d, roster_d, inbox_d, seeds_d = _protocol(n, cfg_d, seed + 1)
    gens = [np.random.default_rng([seed, u]) for u in range(n)]
    kinds = ("central", "distributed", "central_prg", "distributed_prg", "central_enc", "distributed_enc")
    times = {k: [] for k in kinds}
    encoders = {
        "central": lambda u: cfg_c.encode(P.flatten(dp.clip_update(deltas[u], max_norm=S_CLIP))),
        "distributed": lambda u: D.encode_client(P.flatten(deltas[u]), plan=plan, signs=signs, rng=gens[u]),
    }
    phones = {
        "central": (cfg_c, sec_c, roster_c, inbox_c, seeds_c),
        "distributed": (cfg_d, sec_d, roster_d, inbox_d, seeds_d),
    }
    for _ in range(repeats):
        for u in range(n):
            for kind, (cfg, sec, roster, inbox, seeds) in phones.items():  # interleaved: the same load for both
                t0 = time.perf_counter()
                enc = encoders[kind](u)
                t1 = time.perf_counter()
                S.mask_input(sec[u], enc, roster=roster, inbox=inbox[u], config=cfg)
                t2 = time.perf_counter()
                S.mask_vector(enc, client=u, pair_seeds=seeds[u], self_seed=sec[u].self_seed, bits=BITS)
                t3 = time.perf_counter()
                times[kind].append(t2 - t0)
                times[f"{kind}_enc"].append(t1 - t0)
                times[f"{kind}_prg"].append((t1 - t0) + (t3 - t2))
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {
        "dim": dim,
        "padded_dim": plan.padded_dim,
        "client_ms_central": ms["central"],
        "client_ms_distributed": ms["distributed"],
        "client_ratio": ms["distributed"] / ms["central"],
        "client_ms_central_prg_only": ms["central_prg"],
        "client_ms_distributed_prg_only": ms["distributed_prg"],
        "client_ratio_prg_only": ms["distributed_prg"] / ms["central_prg"],
        "encode_ms_central": ms["central_enc"],
        "encode_ms_distributed": ms["distributed_enc"],
    }


def worst_case_wraps(plan: D.Plan, *, sums: int, seed: int) -> tuple[float, int]:
    """Wrap rate of ``sums`` secure sums of ``plan.cohort`` phones whose updates are aligned at the clip norm."""
    x = np.full((plan.cohort, plan.dim), plan.clip_norm / math.sqrt(plan.dim))
    wrapped = 0
    for t in range(sums):
        signs = D.rotation_signs(plan.dim, rng=np.random.default_rng([seed, t]))
        gens = [np.random.default_rng([seed, t, u]) for u in range(plan.cohort)]
        raw = D.encode_cohort(x, plan=plan, signs=signs, rngs=gens, modular=False).sum(axis=0)
        wrapped += int(np.sum(raw != D.centered(D.modular_clip(raw, bits=plan.bits), bits=plan.bits)))
    return wrapped / (sums * plan.padded_dim), sums * plan.padded_dim


def consistency_bytes(seed: int) -> int:
    """Median bytes a phone sends in the consistency round of a defended round of lesson 10's cohort."""
    n = PER_ROUND
    config = S.Config(num_clients=n, threshold=capstone.threshold_for(n), dim=18, clip=S_CLIP, bits=BITS)
    x = np.random.default_rng(seed).uniform(-0.1, 0.1, (n, 18))
    r = M.run_round(x, config=config, defended=True, rng=seed, seeded_keys=True, dropouts={0: "masked_input"},
                    devices=M.device_keys(n, rng=seed))  # fmt: skip
    return int(np.median(r.consistency_bytes[list(r.participants["unmask"])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--wrap-sums", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_all = time.perf_counter()
    clients, test, spec = lesson10()
    n = len(clients)
    q = PER_ROUND / n
    acct = dict(num_users=n, q=q, rounds=ROUNDS, dropout_rate=DROPOUT)
    t0 = time.perf_counter()
    z_c = capstone.noise_multiplier_for(epsilon=EPS, **acct)
    m = capstone.min_survivors_for(**acct)
    z_d = capstone.noise_multiplier_for(epsilon=EPS, noise="distributed", dim=18, clip_norm=S_CLIP, bits=BITS,
                                        min_survivors=m, **acct)  # fmt: skip
    calibrate_s = time.perf_counter() - t0
    plan = capstone.distributed_plan(dim=18, clip_norm=S_CLIP, noise_multiplier=z_d, num_users=n, q=q, bits=BITS,
                                     min_survivors=m)  # fmt: skip
    print(f"z central {z_c:.4f}, z distributed {z_d:.4f} (min_survivors {m}, cohort cap {plan.cohort}, "
          f"scale {plan.scale:.1f}) in {calibrate_s:.1f} s", flush=True)  # fmt: skip

    res = accuracies(clients, test, spec, seeds=args.seeds, z_c=z_c, z_d=z_d, m=m)
    hc, hd = res["hists"]["central"], res["hists"]["distributed"]
    released = sum(int(np.sum(~h.refused & (h.included > 0))) for h in hd)
    wrap_coords = released * plan.padded_dim
    wrap_rate = sum(int(h.wrapped.sum()) for h in hd) / wrap_coords
    worst, worst_coords = worst_case_wraps(plan, sums=args.wrap_sums, seed=args.seed)
    bound = D.wrap_probability(scale=plan.scale, dim=plan.dim, clip_norm=plan.clip_norm, clients=plan.cohort,
                               local_variance=plan.local_variance, bits=plan.bits)  # fmt: skip
    included = float(np.mean([h.included.mean() for h in hd]))
    small = phone_ms(18, z=z_d, m=m, num_users=n, repeats=args.repeats, seed=args.seed)
    print("lesson 10 (18 parameters): " + ", ".join(f"{k}={v:.4g}" for k, v in small.items()), flush=True)
    large = phone_ms(10_000, z=z_d, m=m, num_users=n, repeats=max(1, args.repeats // 2), seed=args.seed)
    print("large (10,000 parameters): " + ", ".join(f"{k}={v:.4g}" for k, v in large.items()), flush=True)
    cons = consistency_bytes(args.seed)
    central_acc = statistics.mean(res["acc"]["central"])
    distributed_acc = statistics.mean(res["acc"]["distributed"])
    out = {
        "central_acc": central_acc,
        "distributed_acc": distributed_acc,
        "acc_gap_points": 100 * (central_acc - distributed_acc),
        "central_acc_per_seed": res["acc"]["central"],
        "distributed_acc_per_seed": res["acc"]["distributed"],
        "epsilon_central": hc[0].epsilon(delta=DELTA),
        "epsilon_distributed": hd[0].epsilon(delta=DELTA),
        "epsilon_distributed_mechanism_only": float(D.epsilon(plan, q=q, rounds=ROUNDS, delta=DELTA)),
        "z_central": z_c,
        "z_distributed": z_d,
        "min_survivors": m,
        "cohort_cap": plan.cohort,
        "refused_rounds_distributed": int(sum(int(h.refused.sum()) for h in hd)),
        "bits": plan.bits,
        "bits_central": BITS,
        "values_per_phone_central": 18,
        "values_per_phone_distributed": plan.padded_dim,
        "masked_vector_bytes_central": math.ceil(18 * BITS / 8),
        "masked_vector_bytes_distributed": plan.bytes_per_phone,
        "bytes_per_phone_central": statistics.mean(h.bytes_per_phone() for h in hc),
        "bytes_per_phone_distributed": statistics.mean(h.bytes_per_phone() for h in hd),
        "wrap_rate": wrap_rate,
        "wrap_coordinates": wrap_coords,
        "wrap_rate_worst_case": worst,
        "wrap_coordinates_worst_case": worst_coords,
        "wrap_bound": bound,
        "server_noise_std_central": 0.0,
        "server_noise_std_distributed": math.sqrt(included * plan.local_variance) / plan.scale,
        "client_ms_central": small["client_ms_central"],
        "client_ms_distributed": small["client_ms_distributed"],
        "client_ratio": small["client_ratio"],
        "client_ratio_prg_only": small["client_ratio_prg_only"],
        "consistency_round_bytes": cons,
        "lesson10": small,
        "large": large,
        "seconds": time.perf_counter() - t_all,
        "config": {
            **vars(args),
            "rounds": ROUNDS,
            "clip_norm": S_CLIP,
            "dropout_rate": DROPOUT,
            "epsilon": EPS,
            "delta": DELTA,
            "users_per_round": PER_ROUND,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
