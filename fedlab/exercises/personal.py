"""Lesson 12 exercises: personal models.

12.1 ``user_accuracy``       each user's accuracy on their own days (every user counts once)
12.2 ``fine_tune_user``      k SGD steps on one phone, from the global model
12.3 ``ditto_step``          one step of Ditto's personal update, pulled towards the global model
12.4 ``dp_loss_recovered``   the share of DP's accuracy loss that personalization wins back

Each test compares the learner's answer with the reference in :mod:`fedlab.personal` (or
:func:`fedlab.fedavg.local_sgd`) on small seeded problems.
"""

from __future__ import annotations

import math

import numpy as np

from fedlab import fedavg, models, personal
from fedlab import params as P
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, expect_params_close, register, test_rng


def _toy(n, *, d=5, classes=2, seed=0):
    rng = test_rng(seed)
    w = rng.standard_normal((d, classes))
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(x @ w + 0.7 * rng.standard_normal((n, classes)), axis=1).astype(np.int64)
    return x, y


def _as_params(got, like, what):
    if not isinstance(got, (list, tuple)) or len(got) != len(like):
        raise CheckFailed(f"{what}: expected a list of {len(like)} arrays (a model), got {type(got).__name__}"
                          + (f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""))  # fmt: skip
    return [np.asarray(g) for g in got]


def _unchanged(before, after, what, name):
    if not P.allclose(after, before, atol=0, rtol=0):
        raise CheckFailed(f"{what}: your function changed the {name} it was given; work on a copy")


# ---- 12.1 user_accuracy --------------------------------------------------------------------


def reference_user_accuracy(pred, y, user, num_users):
    """The reference for 12.1: mean of ``pred == y`` over each user's rows, ``nan`` without rows."""
    right = (np.asarray(pred) == np.asarray(y)).astype(np.float64)
    days = np.bincount(user, minlength=num_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(user, right, minlength=num_users) / days


def _acc_case(answer, pred, y, user, num_users, what, hint=""):
    got = np.asarray(answer(np.asarray(pred), np.asarray(y), np.asarray(user), num_users), dtype=np.float64)
    want = reference_user_accuracy(pred, y, user, num_users)
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: expected shape {want.shape} (one accuracy per user id), got {got.shape}")
    right = np.bincount(user, (np.asarray(pred) == np.asarray(y)).astype(np.float64), minlength=num_users)
    if np.allclose(got, right / len(y), equal_nan=True) and not np.allclose(got, want, equal_nan=True):
        raise CheckFailed(f"{what}: you divided each user's right days by all rows ({len(y)}); divide by the "
                          "user's own number of rows (np.bincount(user, minlength=num_users))")  # fmt: skip
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        raise CheckFailed(f"{what}: users without rows must be nan (no days, no score), others a number; got "
                          f"{np.round(got, 3).tolist()}, expected {np.round(want, 3).tolist()}")  # fmt: skip
    expect_close(np.nan_to_num(got, nan=-1), np.nan_to_num(want, nan=-1), what=what, hint=hint)


def _t_acc_known(answer):
    _acc_case(answer, [1, 0, 1, 1, 0], [1, 1, 1, 0, 0], [0, 0, 2, 2, 2], 3,
              "user 0 gets 1 of 2 days right, user 2 gets 2 of 3, user 1 has no days",
              hint="per user: (right days) / (the user's days), not the share of all rows; user 1 -> nan")  # fmt: skip


def _t_acc_per_user_not_per_day(answer):
    user = np.array([0] * 9 + [1])
    y = np.zeros(10, int)
    pred = np.array([0] * 9 + [1])
    _acc_case(answer, pred, y, user, 2, "user 0 right on all 9 days, user 1 wrong on its one day",
              hint="every user counts once: [1.0, 0.0]")  # fmt: skip


def _t_acc_random(answer):
    rng = test_rng(3)
    user = rng.integers(0, 40, 500)
    _acc_case(answer, rng.integers(0, 2, 500), rng.integers(0, 2, 500), user, 45, "500 shuffled rows of 40 of 45 users")


# ---- 12.2 fine_tune_user -------------------------------------------------------------------


def reference_fine_tune_user(spec, params, x, y, *, steps, batch_size, lr, rng):
    """The reference for 12.2: ``k`` steps of local SGD from ``params``; returns the personal model."""
    steps = personal.check_steps(steps)
    if steps == 0:
        return [np.array(p) for p in params]
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    epochs = math.ceil(steps / fedavg.steps_per_epoch(len(y), batch_size))
    orders = fedavg.epoch_orders(gen.random((epochs, len(y))))
    out = fedavg.local_sgd(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr, max_steps=steps)
    return P.add(params, out.delta)


def _ft_case(answer, *, spec, n, steps, batch_size, lr, seed, what, hint=""):
    x, y = _toy(n, d=spec.in_features, classes=spec.num_classes, seed=seed)
    params = models.init_params(spec, rng=seed)
    before = [p.copy() for p in params]
    want = reference_fine_tune_user(
        spec, params, x, y, steps=steps, batch_size=batch_size, lr=lr, rng=test_rng(seed + 1)
    )
    got = answer(spec, params, x, y, steps=steps, batch_size=batch_size, lr=lr, rng=test_rng(seed + 1))
    _unchanged(before, params, what, "global params")
    got = _as_params(got, want, what)
    if steps and P.allclose(got, P.add(want, [-p for p in params]), atol=1e-5, rtol=1e-4):
        raise CheckFailed(f"{what}: you returned the delta (new - global); fine-tuning returns the personal *model*")
    expect_params_close(got, want, what=what, atol=1e-5, rtol=1e-4, hint=hint or (
        "epochs = ceil(k / ceil(n / batch_size)), orders = fedavg.epoch_orders(rng.random((epochs, n))), then "
        "fedavg.local_sgd(..., max_steps=k); return params + delta"))  # fmt: skip


def _t_ft_few_steps(answer):
    _ft_case(answer, spec=models.logreg(5, 2), n=12, steps=2, batch_size=4, lr=0.3, seed=0,
             what="logreg, 12 days, B=4, k=2 steps (less than an epoch)",
             hint="stop after k steps, not after k epochs: max_steps=k")  # fmt: skip


def _t_ft_many_steps(answer):
    _ft_case(answer, spec=models.mlp(5, (4,), 2), n=7, steps=9, batch_size=3, lr=0.2, seed=1,
             what="MLP, 7 days, B=3, k=9 steps (three epochs of 3 steps)",
             hint="k = 9 needs ceil(9 / 3) = 3 epochs, each in a fresh order from rng.random((epochs, n))")  # fmt: skip


def _t_ft_zero(answer):
    _ft_case(answer, spec=models.logreg(5, 2), n=6, steps=0, batch_size=2, lr=0.5, seed=2,
             what="k=0 steps (the phone keeps the global model)")  # fmt: skip


def _t_ft_uneven(answer):
    _ft_case(answer, spec=models.mlp(5, (6,), 2, activation="tanh"), n=5, steps=7, batch_size=2, lr=0.2, seed=3,
             what="5 days, B=2 (3 steps an epoch, the last batch smaller), k=7")  # fmt: skip


# ---- 12.3 ditto_step ----------------------------------------------------------------------


def reference_ditto_step(spec, v, w, x, y, *, lam, lr):
    """The reference for 12.3: ``v - lr * (grad F(v) + lam * (v - w))`` on the full batch."""
    out = fedavg.local_sgd(spec, v, x, y, orders=np.arange(len(y))[None], batch_size=None, lr=lr, mu=lam, anchor=w)
    return P.add(v, out.delta)


def _ditto_case(answer, *, spec, lam, lr, seed, what, hint=""):
    x, y = _toy(9, d=spec.in_features, classes=spec.num_classes, seed=seed)
    w = models.init_params(spec, rng=seed)
    v = models.init_params(spec, rng=seed + 50)
    bw, bv = [p.copy() for p in w], [p.copy() for p in v]
    want = reference_ditto_step(spec, v, w, x, y, lam=lam, lr=lr)
    got = _as_params(answer(spec, v, w, x, y, lam=lam, lr=lr), want, what)
    _unchanged(bw, w, what, "global model w")
    _unchanged(bv, v, what, "personal model v")
    if lam:
        wrong = [a + 2 * lr * lam * (b - c) for a, b, c in zip(want, v, w)]  # the step with lam * (w - v)
        if P.allclose(got, wrong, atol=1e-6, rtol=1e-5):
            raise CheckFailed(f"{what}: the pull has the wrong sign: the step must move v *towards* w, "
                              "grad + lam * (v - w), not lam * (w - v)")  # fmt: skip
    grad_at_w = fedavg.local_sgd(spec, w, x, y, orders=np.arange(len(y))[None], batch_size=None, lr=lr).delta
    if P.allclose(got, [a + d - lr * lam * (a - c) for a, d, c in zip(v, grad_at_w, w)], atol=1e-6, rtol=1e-5):
        raise CheckFailed(f"{what}: you took the loss gradient at the global model w; Ditto's personal step "
                          "differentiates the phone's loss at its own model v")  # fmt: skip
    plain = reference_ditto_step(spec, v, w, x, y, lam=0.0, lr=lr)
    if lam and P.allclose(got, [a - lam * (b - c) for a, b, c in zip(plain, v, w)], atol=1e-6, rtol=1e-5):
        raise CheckFailed(f"{what}: the pull lam * (v - w) was not multiplied by lr: the whole step is "
                          "lr * (grad + lam * (v - w))")  # fmt: skip
    expect_params_close(got, want, what=what, atol=1e-5, rtol=1e-4, hint=hint or
                        "the mean cross-entropy gradient at v over all rows, plus lam * (v - w), times lr")  # fmt: skip


def _t_ditto_no_pull(answer):
    _ditto_case(answer, spec=models.logreg(5, 2), lam=0.0, lr=0.5, seed=0,
                what="lam=0: a plain full-batch gradient step on the phone's data from v")  # fmt: skip


def _t_ditto_pull(answer):
    _ditto_case(answer, spec=models.logreg(5, 2), lam=2.0, lr=0.1, seed=1, what="logreg, lam=2")


def _t_ditto_mlp(answer):
    _ditto_case(answer, spec=models.mlp(5, (4,), 2), lam=0.5, lr=0.3, seed=2, what="MLP, lam=0.5")


def _t_ditto_gradient_at_v(answer):
    spec = models.mlp(5, (3,), 2)
    x, y = _toy(9, d=5, seed=4)
    w = models.init_params(spec, rng=4)
    v = models.init_params(spec, rng=77)
    got = _as_params(answer(spec, v, w, x, y, lam=1.0, lr=0.2), w, "gradient at v")
    at_w = P.add(v, [d for d in fedavg.local_sgd(spec, w, x, y, orders=np.arange(9)[None], batch_size=None,
                                                   lr=0.2).delta])  # fmt: skip
    if P.allclose(got, [a - 0.2 * (b - c) for a, b, c in zip(at_w, v, w)], atol=1e-6, rtol=1e-5):
        raise CheckFailed("gradient at v: you took the loss gradient at the global model w; Ditto's personal step "
                          "differentiates the phone's loss at its own model v")  # fmt: skip
    expect_params_close(got, reference_ditto_step(spec, v, w, x, y, lam=1.0, lr=0.2), what="MLP, v far from w",
                        atol=1e-5, rtol=1e-4)  # fmt: skip


# ---- 12.4 dp_loss_recovered ----------------------------------------------------------------


def _rec_case(answer, g, d, p, what, hint=""):
    got = answer(global_accuracy=g, dp_accuracy=d, personal_dp_accuracy=p)
    want = float(personal.loss_recovered(global_accuracy=g, dp_accuracy=d, personal_dp_accuracy=p))
    got = float(got)
    if math.isnan(want) or math.isnan(got):
        if not (math.isnan(want) and math.isnan(got)):
            raise CheckFailed(f"{what}: expected {want}, got {got}" + (f"; {hint}" if hint else ""))
        return
    expect_close(got, want, what=what, hint=hint)


def _t_rec_half(answer):
    _rec_case(answer, 0.70, 0.60, 0.65, "global 0.70, DP 0.60, DP + fine-tuning 0.65",
              hint="(0.65 - 0.60) / (0.70 - 0.60) = 0.5")  # fmt: skip


def _t_rec_clip(answer):
    _rec_case(answer, 0.70, 0.60, 0.80, "fine-tuning passes the non-private model", hint="clip to 1: all of it")
    _rec_case(answer, 0.70, 0.60, 0.55, "fine-tuning makes it worse", hint="clip to 0: none of it")


def _t_rec_nothing_lost(answer):
    _rec_case(answer, 0.70, 0.71, 0.75, "DP lost nothing (0.71 >= 0.70)",
              hint="no loss, nothing to recover: return float('nan'), not a number from a negative ratio")  # fmt: skip


register(
    Exercise(
        "12.1",
        "each user's accuracy",
        "user_accuracy",
        (
            Test("known_answer", _t_acc_known),
            Test("per_user_not_per_day", _t_acc_per_user_not_per_day),
            Test("random_users", _t_acc_random, in_check=False),
        ),
        hint="np.bincount(user, weights=right, minlength=num_users) / np.bincount(user, minlength=num_users)",
    ),
    Exercise(
        "12.2",
        "fine-tuning on the phone",
        "fine_tune_user",
        (
            Test("few_steps", _t_ft_few_steps),
            Test("many_steps", _t_ft_many_steps),
            Test("zero_steps", _t_ft_zero),
            Test("uneven_last_batch", _t_ft_uneven, in_check=False),
        ),
    ),
    Exercise(
        "12.3",
        "Ditto's personal step",
        "ditto_step",
        (
            Test("no_pull", _t_ditto_no_pull),
            Test("pull", _t_ditto_pull),
            Test("mlp", _t_ditto_mlp, in_check=False),
            Test("gradient_at_v", _t_ditto_gradient_at_v),
        ),
    ),
    Exercise(
        "12.4",
        "DP loss recovered",
        "dp_loss_recovered",
        (
            Test("half", _t_rec_half),
            Test("clipped", _t_rec_clip),
            Test("nothing_lost", _t_rec_nothing_lost),
        ),
    ),
)
