"""Time per FedAvg round deployed on Flower (SuperLink + 3 SuperNodes on 127.0.0.1) vs simulated in-process.

The same task both ways: lesson 11's app (logistic regression on the digits,
3 IID shards, E=2, B=32, lr=0.5), the same seed, no client-side evaluation.
Prints the federation start-up (SuperLink healthy, all nodes active), the
mean seconds per round of each, their ratio, and whether the final
parameters agree. Run it in the course environment:

    .venv/bin/python benchmarks/flower_round.py [--rounds 3] [--nodes 3]

The last line is one JSON object.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch

from fedlab.flower import APP_DIR, core, local


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--model", default="logreg", choices=core.MODELS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = {
        "num-server-rounds": args.rounds,
        "min-nodes": args.nodes,
        "round-timeout": 120.0,
        "seed": 0,
        "model": args.model,
        "local-epochs": 2,
        "batch-size": 32,
        "lr": 0.5,
        "fraction-evaluate": 0.0,
    }
    settings = core.parse_run_config(run)
    shards = [core.partition_data(i, args.nodes) for i in range(args.nodes)]
    core.simulate(shards, core.parse_run_config({**run, "num-server-rounds": 1}))  # warm-up (imports, caches)
    t0 = time.perf_counter()
    sim_params, sim_rows = core.simulate(shards, settings)
    sim_total = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "final.npz")
        t0 = time.perf_counter()
        with local.Federation(num_nodes=args.nodes) as fed:
            startup = dict(fed.timings)
            res = fed.run(APP_DIR, {**run, "output-file": out}, timeout=600)
        wall = time.perf_counter() - t0
        with np.load(out) as z:
            deployed = core.record_to_params({k: z[k] for k in z.files})
    per_dep = float(np.mean([r["seconds"] for r in res.rounds]))
    per_sim = sim_total / args.rounds
    diff = max(float(np.abs(a - b).max()) for a, b in zip(deployed, sim_params))
    for d, s in zip(res.rounds, sim_rows):
        print(
            f"round {d['round']}: deployed {d['seconds']:.2f} s, simulated {s['seconds']:.4f} s, "
            f"accuracy {d['accuracy']:.4f} / {s['accuracy']:.4f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "flower_round",
                "nodes": args.nodes,
                "rounds": args.rounds,
                "model": args.model,
                "superlink_healthy_s": round(startup["superlink_healthy"], 2),
                "startup_s": round(startup["nodes_active"], 2),
                "deployed_round_s": round(per_dep, 2),
                "simulated_round_s": round(per_sim, 4),
                "ratio": round(per_dep / per_sim, 1),
                "flwr_run_s": round(res.seconds, 2),
                "total_wall_s": round(wall, 2),
                "max_param_diff": diff,
                "same_sha256": res.done["params_sha256"] == core.params_sha256(sim_params),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
