"""The ClientApp: each message runs lesson 02's ``client_update`` on this SuperNode's own data.

Message ``train``: content ``{"arrays": ArrayRecord (global params), "config": ConfigRecord
(core.train_config)}``; reply ``{"arrays": ArrayRecord (the delta), "metrics": MetricRecord
{"num-examples", "loss", "steps", "partition-id" (-1 for a data-file node)}}``.
Message ``evaluate``: same content; reply ``{"metrics": {"num-examples", "loss", "accuracy"}}``.
Only the delta, the example count and these metrics leave the node.
"""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedlab.flower import core

from .records import from_array_record, from_config_record, to_array_record

app = ClientApp()


def _node_data(context: Context):
    node = core.parse_node_config(context.node_config)
    x, y = core.load_node_data(node)
    return node, x, y


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Lesson 02's client update on this node's data; replies with the delta, n and metrics."""
    import torch

    torch.set_num_threads(1)
    node, x, y = _node_data(context)
    params = from_array_record(msg.content["arrays"])
    config = from_config_record(msg.content["config"])
    key = core.client_key(node, context.node_id)
    delta, n, metrics = core.train_reply(params, x, y, config, client_key=key)
    pid = -1 if node.partition_id is None else node.partition_id
    reply = RecordDict(
        {
            "arrays": to_array_record(delta),
            "metrics": MetricRecord({"num-examples": int(n), "partition-id": int(pid), **metrics}),
        }
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Loss and accuracy of the received model on this node's data."""
    import torch

    torch.set_num_threads(1)
    _, x, y = _node_data(context)
    n, metrics = core.evaluate_reply(
        from_array_record(msg.content["arrays"]), x, y, from_config_record(msg.content["config"])
    )
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": n, **metrics})}), reply_to=msg)
