"""The ServerApp: lesson 02's aggregation and server update, run by Flower's deployment engine.

Not Flower's ``FedAvg`` strategy: the main loop below pushes one ``train``
message per connected node, pulls the replies every 0.1 s until
``core.round_decision`` says to stop waiting (everyone answered, or
``round-timeout`` passed), then aggregates the usable replies with
``core.apply_round`` (= ``fedavg.aggregate`` + ``fedavg.server_update``) if
there are at least ``min-nodes`` of them. Progress goes to stdout as the
``FEDLAB_*`` lines documented in :mod:`fedlab.flower.core`.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedlab.flower import core

from .records import from_array_record, to_array_record, to_config_record

app = ServerApp()
POLL = 0.1


def emit(kind: str, payload: dict) -> None:
    """Print one ``FEDLAB_<KIND> {json}`` progress line, flushed."""
    print(core.format_line(kind, payload), flush=True)


def wait_for_nodes(grid: Grid, settings: core.RunSettings) -> list[int]:
    """Sorted node ids once at least ``min-nodes`` are connected (or whatever is there at the timeout)."""
    end = time.monotonic() + settings.round_timeout
    while True:
        ids = sorted(int(n) for n in grid.get_node_ids())
        if len(ids) >= settings.min_nodes or time.monotonic() >= end:
            return ids
        time.sleep(0.5)


def exchange(grid: Grid, messages: list, settings: core.RunSettings, *, min_nodes: int) -> tuple[list, list, float]:
    """Push ``messages``, pull replies until ``round_decision`` stops waiting; returns (usable, failed, seconds)."""
    t0 = time.monotonic()
    pending = set(grid.push_messages(messages))
    sent, usable, failed = len(pending), [], []
    while True:
        if pending:
            for reply in grid.pull_messages(list(pending)):
                pending.discard(reply.metadata.reply_to_message_id)
                if reply.has_error():
                    failed.append({"node_id": int(reply.metadata.src_node_id), "error": str(reply.error.reason)[:300]})
                else:
                    usable.append(reply)
        decision = core.round_decision(
            sent=sent,
            answered=sent - len(pending),
            usable=len(usable),
            min_nodes=min_nodes,
            elapsed=time.monotonic() - t0,
            timeout=settings.round_timeout,
        )
        if decision != "wait":
            return usable, failed, time.monotonic() - t0
        time.sleep(POLL)


def client_evaluation(grid: Grid, settings: core.RunSettings, params, node_ids, rnd: int) -> dict | None:
    """Ask a seeded sample of the nodes to evaluate ``params`` on their data; weighted means, or None."""
    chosen = core.sample_evaluators(node_ids, fraction=settings.fraction_evaluate, seed=settings.seed, round=rnd)
    if not chosen:
        return None
    content = RecordDict(
        {"arrays": to_array_record(params), "config": to_config_record(core.train_config(settings, rnd))}
    )
    msgs = [Message(content, dst_node_id=n, message_type="evaluate", group_id=f"eval-{rnd}") for n in chosen]
    usable, _, _ = exchange(grid, msgs, settings, min_nodes=len(msgs))
    if not usable:
        return {"replies": 0, "loss": None, "accuracy": None, "num_examples": 0}
    n = np.array([float(m.content["metrics"]["num-examples"]) for m in usable])
    loss = np.array([float(m.content["metrics"]["loss"]) for m in usable])
    acc = np.array([float(m.content["metrics"]["accuracy"]) for m in usable])
    return {
        "replies": len(usable),
        "loss": float(n @ loss / n.sum()),
        "accuracy": float(n @ acc / n.sum()),
        "num_examples": int(n.sum()),
    }


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The rounds: push train messages, wait per round_decision, aggregate with fedavg, print progress."""
    t_start = time.monotonic()
    rounds_done, params = 0, None
    try:
        settings = core.parse_run_config(context.run_config)
        params = core.initial_params(settings)
        node_ids = wait_for_nodes(grid, settings)
        emit(
            "START",
            {
                "nodes": len(node_ids),
                "node_ids": node_ids,
                "num_params": int(sum(p.size for p in params)),
                "config": settings.run_config(),
            },
        )
        if len(node_ids) < settings.min_nodes:
            raise RuntimeError(
                f"{len(node_ids)} node(s) connected after round-timeout={settings.round_timeout:g} s: "
                f"min-nodes={settings.min_nodes} are needed"
            )
        for rnd in range(1, settings.num_server_rounds + 1):
            t0 = time.monotonic()
            node_ids = sorted(int(n) for n in grid.get_node_ids())
            content = RecordDict(
                {"arrays": to_array_record(params), "config": to_config_record(core.train_config(settings, rnd))}
            )
            msgs = [Message(content, dst_node_id=n, message_type="train", group_id=str(rnd)) for n in node_ids]
            usable, failed, _ = exchange(grid, msgs, settings, min_nodes=settings.min_nodes)
            replies = []
            for m in usable:
                metrics = m.content["metrics"]
                node_id = int(m.metadata.src_node_id)
                pid = int(metrics.get("partition-id", -1))
                replies.append(
                    core.Reply(
                        node_id=node_id,
                        client_key=pid if pid >= 0 else node_id,
                        delta=from_array_record(m.content["arrays"]),
                        num_examples=int(metrics["num-examples"]),
                        metrics={"loss": float(metrics["loss"]), "steps": float(metrics["steps"])},
                    )
                )
            params, train_loss, status = core.close_round(params, replies, min_nodes=settings.min_nodes, round=rnd)
            seconds = time.monotonic() - t0
            evaluation = client_evaluation(grid, settings, params, node_ids, rnd) if status == "aggregated" else None
            emit(
                "ROUND",
                core.round_payload(
                    settings,
                    params,
                    round=rnd,
                    status=status,
                    replies=replies,
                    sent=len(msgs),
                    train_loss=train_loss,
                    seconds=seconds,
                    failed=failed,
                    evaluation=evaluation,
                ),
            )
            rounds_done = rnd
        loss, acc = core.evaluate_global(settings, params)
        if settings.output_file:
            with open(settings.output_file, "wb") as f:  # exactly this name (np.savez would add ".npz")
                np.savez(f, **core.params_to_record(params))
        emit(
            "DONE",
            {
                "status": "ok",
                "rounds": rounds_done,
                "accuracy": acc,
                "loss": loss,
                "params_sha256": core.params_sha256(params),
                "seconds": core.round_seconds(time.monotonic() - t_start),
                "error": None,
            },
        )
    except Exception as err:  # noqa: BLE001 - reported on the progress stream, then re-raised for Flower's log
        emit(
            "DONE",
            {
                "status": "error",
                "rounds": rounds_done,
                "accuracy": None,
                "loss": None,
                "params_sha256": None if params is None else core.params_sha256(params),
                "seconds": core.round_seconds(time.monotonic() - t_start),
                "error": f"{type(err).__name__}: {err}",
            },
        )
        raise
