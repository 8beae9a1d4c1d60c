"""Lesson 03's catalogued slips: Dirichlet split, per-group accuracy, FedProx, server momentum."""

from tests.mistakes import Mistake

MISTAKES = [
    Mistake(
        "03.1",
        "drops_the_last_piece",
        ("sorted",),
        edits=(("return [np.sort(np.concatenate(parts))", "return [(np.concatenate(parts))"),),
    ),
    Mistake(
        "03.1",
        "ignores_alpha",
        ("alpha",),
        edits=(("        p = g.dirichlet(np.full(num_clients, alpha))\n", "        p = g.dirichlet(np.full(num_clients, 1.0))\n"),),
    ),
    Mistake(
        "03.1",
        "unseeded",
        ("rng",),
        edits=(("g = seeding.as_generator(rng)", "g = np.random.default_rng()"),),
    ),
    Mistake(
        "03.2",
        "zero_for_empty_group",
        ("np.nan",),
        edits=(("    acc = np.full(num_groups, np.nan)\n", "    acc = np.zeros(num_groups)\n"),),
    ),
    Mistake(
        "03.2",
        "divide_by_all_rows",
        ("divided by ALL rows", "own number of rows"),
        edits=(("acc[g] = np.mean(y_true[rows] == y_pred[rows])",
                "acc[g] = np.sum(y_true[rows] == y_pred[rows]) / len(y_true)"),),
    ),
    Mistake(
        "03.3",
        "prox_sign_flipped",
        ("wrong sign",),
        edits=(("p -= lr * (p.grad + mu * (p - p0))", "p -= lr * (p.grad - mu * (p - p0))"),),
    ),
    Mistake(
        "03.3",
        "moving_anchor",
        ("w_global",),
        edits=(("p -= lr * (p.grad + mu * (p - p0))", "p -= lr * (p.grad + mu * p)"),),
    ),
    Mistake(
        "03.3",
        "no_zero_grad",
        ("gradients accumulate", "zero_grad"),
        edits=(("            model.zero_grad()\n", ""),),
    ),
    Mistake(
        "03.4",
        "old_velocity_step",
        ("the NEW v",),
        edits=(("new_params = [w + server_lr * v for w, v in zip(params, new_velocity)]",
                "new_params = [w + server_lr * v for w, v in zip(params, velocity)]"),),
    ),
    Mistake(
        "03.4",
        "velocity_not_decayed",
        ("beta * v + delta",),
        edits=(("new_velocity = [beta * v + d for v, d in zip(velocity, delta)]",
                "new_velocity = [v + d for v, d in zip(velocity, delta)]"),),
    ),
]

PATHS = {
    "03.1": {
        "every sample exactly once, sorted per client": "covers_every_sample_once",
        "alpha sets the skew": "skew_follows_alpha",
        "the rng argument": "seeded",
    },
    "03.2": {"accuracy within each group": "known_answer", "np.nan for a group without rows": "empty_group_is_nan"},
    "03.3": {
        "the proximal term mu": "logreg_mu_half",
        "several epochs, an MLP": "mlp_mu_one",
        "batch_size=None (the full batch)": "full_batch",
    },
    "03.4": {"v <- beta v + delta; w <- w + server_lr v": "known_answer", "several tensors": "matches_reference"},
}
