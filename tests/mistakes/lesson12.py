"""Lesson 12 (personal models): likely wrong answers and the diagnosis each must get."""

from tests.mistakes import Mistake

MISTAKES = [
    # 12.1 user_accuracy
    Mistake("12.1", "divided_by_all_rows", ("divided", "all rows"),
            edits=(("weights=right, minlength=num_users) / days", "weights=right, minlength=num_users) / len(y)"),)),
    Mistake("12.1", "one_accuracy_for_everyone", ("one accuracy per user id",),
            edits=(("return np.bincount(user, weights=right, minlength=num_users) / days", "return right.mean()"),)),
    Mistake("12.1", "zero_for_users_without_days", ("must be nan",),
            edits=(("return np.bincount(user, weights=right, minlength=num_users) / days",
                    "return np.nan_to_num(np.bincount(user, weights=right, minlength=num_users) / days)"),)),
    # 12.2 fine_tune_user
    Mistake("12.2", "returned_the_delta", ("returned the delta",),
            edits=(("return P.add(params, out.delta)", "return out.delta"),)),
    Mistake("12.2", "k_epochs_not_k_steps", ("k steps, not after k epochs",),
            edits=(("\n    epochs = math.ceil(steps / fedavg.steps_per_epoch(len(y), batch_size))", "\n    epochs = steps"),
                   ("lr=lr, max_steps=steps)", "lr=lr)"))),
    Mistake("12.2", "one_order_for_all_epochs", ("fresh order",),
            edits=(("orders = fedavg.epoch_orders(gen.random((epochs, len(y))))",
                    "orders = np.repeat(fedavg.epoch_orders(gen.random((1, len(y)))), epochs, axis=0)"),)),
    # 12.3 ditto_step
    Mistake("12.3", "pull_away_from_global", ("wrong sign",),
            edits=(("lam * (p - q)", "lam * (q - p)"),)),
    Mistake("12.3", "gradient_at_the_global_model", ("gradient at the global model w",),
            edits=(("tensors = [torch.tensor(np.asarray(p), requires_grad=True) for p in v]",
                    "tensors = [torch.tensor(np.asarray(p), requires_grad=True) for p in w]"),)),
    Mistake("12.3", "pull_not_scaled_by_lr", ("not multiplied by lr",),
            edits=(("(p - lr * (g.numpy() + lam * (p - q)))", "(p - lr * g.numpy() - lam * (p - q))"),)),
    # 12.4 dp_loss_recovered
    Mistake("12.4", "not_clipped", ("clip to 1",),
            edits=(("return float(min(1.0, max(0.0, (personal_dp_accuracy - dp_accuracy) / lost)))",
                    "return float((personal_dp_accuracy - dp_accuracy) / lost)"),)),
    Mistake("12.4", "a_number_when_nothing_was_lost", ("nothing to recover", "nan"),
            edits=(("    if not lost > 0:\n        return float(\"nan\")\n", ""),)),
    Mistake("12.4", "ratio_upside_down", ("(0.65 - 0.60) / (0.70 - 0.60)",),
            edits=(("(personal_dp_accuracy - dp_accuracy) / lost", "lost / (personal_dp_accuracy - dp_accuracy)"),)),
]

PATHS = {
    "12.1": {
        "the share of each user's own rows where pred == y": "known_answer",
        "nan for a user without rows": "known_answer",
        "every user counts once, whatever their number of days": "per_user_not_per_day",
    },
    "12.2": {
        "stop after exactly k steps (less than an epoch)": "few_steps",
        "a fresh random order each epoch, epochs = ceil(k / steps per epoch)": "many_steps",
        "the model, not the delta; params unchanged": "few_steps",
        "k = 0: the global model itself": "zero_steps",
    },
    "12.3": {
        "lam = 0: a plain full-batch step from v": "no_pull",
        "the pull lam * (v - w), times lr": "pull",
        "the gradient at v, not at w": "gradient_at_v",
        "neither v nor w changed": "pull",
    },
    "12.4": {
        "(personal_dp - dp) / (global - dp)": "half",
        "clipped to [0, 1]": "clipped",
        "nan when DP lost nothing": "nothing_lost",
    },
}
