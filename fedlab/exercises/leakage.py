"""Lesson 05 exercises: what model updates reveal.

05.1 ``analytic_reconstruction``  the input of a dense layer with bias, from its gradient (batch of one)
05.2 ``idlg_label``               the label, from the output layer's weight gradient (iDLG)
05.3 ``psnr``                     reconstruction quality in dB
05.4 ``membership_auc``           the AUC of the loss-threshold membership attack

Each test compares the learner's answer with the reference in
:mod:`fedlab.attacks` / :mod:`fedlab.metrics` on small seeded problems.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fedlab import attacks, metrics, models
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, register, test_rng

# ---- 05.1 analytic_reconstruction ---------------------------------------------------------------

_ANALYTIC_HINT = (
    "for one input, dW = outer(g, x) and db = g, so x = dW[i] / db[i] for any row i with db[i] != 0; "
    "skip rows whose db[i] is 0 (or combine all good rows: x = db @ dW / (db @ db))"
)


def _first_layer_case(spec, seed):
    params = models.init_params(spec, rng=seed)
    rng = test_rng(seed)
    x, y = rng.random((1, spec.in_features)), rng.integers(0, spec.num_classes, 1)
    g = attacks.model_gradient(spec, params, x, y)
    return g[0], g[1], x[0]


def _analytic_close(got, dw, db, x, *, what, hint=_ANALYTIC_HINT, **tol):
    """``got`` must be ``x``; names the wrong axis and a row of ``dW`` left undivided."""
    dw, db = np.asarray(dw, dtype=float), np.asarray(db, dtype=float)
    if np.shape(got) == db.shape != x.shape:
        raise CheckFailed(
            f"{what}: expected x of shape {x.shape} (one value per input), got shape {np.shape(got)} (one per "
            "neuron): the wrong axis. Row i of dW is db[i] * x, so divide the ROWS dW[i] by db[i] (average over "
            f"axis 0), not the columns. Hint: {hint}"
        )
    like = {f"row {i} of dW not divided by db[{i}] (row i is db[i] * x)": dw[i] for i in np.flatnonzero(db)}
    like["the rows of dW summed, not divided by db"] = dw.sum(axis=0)
    expect_close(got, x, what=what, hint=hint, like=like, **tol)


def _t_analytic_hand(answer):
    x = np.array([0.0, 0.25, 0.5, 1.0])
    g = np.array([2.0, -0.5, 4.0])
    _analytic_close(
        answer(np.outer(g, x), g), np.outer(g, x), g, x,
        what="dW = outer([2, -0.5, 4], x), db = [2, -0.5, 4] for x = [0, 0.25, 0.5, 1]",
    )  # fmt: skip


def _t_analytic_mlp(answer):
    dw, db, x = _first_layer_case(models.mlp(64, (32,), 10, activation="sigmoid"), 0)
    _analytic_close(
        answer(dw, db), dw, db, x, what="first layer of a sigmoid MLP 64-32-10 on one digit-sized input",
        rtol=1e-6, atol=1e-8,
    )  # fmt: skip


def _t_analytic_dead_rows(answer):
    x = np.array([0.2, 0.4, 0.6])
    g = np.array([0.0, 1.5, 0.0, -2.0])  # neurons 0 and 2 did not fire (ReLU): their rows are all zero
    got = answer(np.outer(g, x), g)
    if np.any(~np.isfinite(np.asarray(got, dtype=float))):
        raise CheckFailed(
            "a layer where db[0] = 0 (a ReLU neuron that did not fire): your answer contains nan or inf, "
            f"got {np.asarray(got)}. Hint: {_ANALYTIC_HINT}"
        )
    expect_close(got, x, what="a layer where db[0] = db[2] = 0 (dead ReLU neurons)", hint=_ANALYTIC_HINT)


def _t_analytic_update(answer):
    dw, db, x = _first_layer_case(models.mlp(64, (16, 16), 10, activation="relu"), 3)
    _analytic_close(
        answer(-0.05 * dw, -0.05 * db), -0.05 * dw, -0.05 * db, x,
        what="a FedSGD update (-lr * gradient, lr = 0.05) of a ReLU MLP",
        hint="a common scale on dW and db cancels in dW[i] / db[i]", rtol=1e-6, atol=1e-8,
    )  # fmt: skip


# ---- 05.2 idlg_label ----------------------------------------------------------------------------

_IDLG_HINT = (
    "row c of the output layer's weight gradient is (p_c - [c == y]) * h with h >= 0 after a sigmoid or ReLU: "
    "only the true class's row is negative, so return the index of the row with the smallest (most negative) sum"
)


def _label(answer, dw, what):
    got = answer(dw)
    if isinstance(got, np.ndarray) and got.size == 1:
        got = got.item()
    if not isinstance(got, numbers.Integral) or isinstance(got, bool):
        raise CheckFailed(f"{what}: expected a class index (an int), got {type(got).__name__} {got!r}")
    return int(got)


def _idlg_slip(dw, got: int) -> str:
    """What a wrong label suggests: the largest row sum, or the columns summed instead of the rows."""
    dw = np.asarray(dw, dtype=float)
    if got == int(np.argmax(dw.sum(axis=1))):
        return " That is the row with the LARGEST sum: the true class's row is the only negative one (argmin)."
    if got == int(np.argmin(dw.sum(axis=0))):
        return (" That is the argmin over the columns (axis 0, one per hidden unit): sum each ROW (axis=1), "
                "one per class.")  # fmt: skip
    return ""


def _t_idlg_hand(answer):
    h = np.array([0.2, 0.7, 0.1])
    g = np.array([0.1, 0.2, -0.6, 0.3])  # softmax minus one-hot of class 2
    dw = np.outer(g, h)
    got = _label(answer, dw, "a hand-made gradient with true class 2")
    if got != 2:
        raise CheckFailed(
            f"a hand-made gradient with true class 2: expected 2, got {got}.{_idlg_slip(dw, got)} Hint: {_IDLG_HINT}"
        )


def _idlg_cases(answer, spec, n, seed, what):
    rng = test_rng(seed)
    for case in range(n):
        params = models.init_params(spec, rng=seed + case)
        x, y = rng.random((1, 64)), int(rng.integers(0, 10))
        dw = attacks.model_gradient(spec, params, x, np.array([y]))[-2]
        got = _label(answer, dw, what)
        if got != y:
            raise CheckFailed(
                f"{what}, case {case}: the true label is {y}, you returned {got}.{_idlg_slip(dw, got)} "
                f"Hint: {_IDLG_HINT}"
            )


def _t_idlg_sigmoid(answer):
    _idlg_cases(answer, models.mlp(64, (32,), 10, activation="sigmoid"), 20, 10, "random sigmoid MLPs and inputs")


def _t_idlg_relu_cnn(answer):
    _idlg_cases(answer, models.cnn(64, (4, 8), 10, activation="relu"), 20, 50, "random ReLU CNNs and inputs")


# ---- 05.3 psnr ----------------------------------------------------------------------------------

_PSNR_HINT = "PSNR = 10 * log10(1 / mean((x - x_hat) ** 2)) for pixels in [0, 1]; the mean runs over all pixels"


_PSNR_RATIOS = {
    math.log(10): "the natural log; PSNR uses log10",
    2.0: "20 * log10 is for an amplitude (the RMSE); on the MSE it is 10 * log10",
}


def _psnr_close(got, x, x_hat, want, *, what, hint=_PSNR_HINT, **tol):
    """``got`` must be ``want``; names the natural log, 20 log10, the summed and the root-mean squared error."""
    sq = (np.asarray(x, dtype=float) - np.asarray(x_hat, dtype=float)) ** 2
    like = {
        "10 * log10(1 / SUM of squared errors): take the mean, not the sum": 10 * math.log10(1 / sq.sum()),
        "10 * log10(1 / RMSE): use the mean squared error itself, not its square root": 5 * math.log10(1 / sq.mean()),
    }
    expect_close(got, want, what=what, hint=hint, like=like, ratios=_PSNR_RATIOS, **tol)


def _t_psnr_known(answer):
    x = np.zeros((8, 8))
    _psnr_close(answer(x, x + 0.1), x, x + 0.1, 20.0, what="every pixel off by 0.1 (MSE 0.01)")
    _psnr_close(answer(x, x + 0.01), x, x + 0.01, 40.0, what="every pixel off by 0.01 (MSE 1e-4)")


def _t_psnr_random(answer):
    rng = test_rng(5)
    for _ in range(5):
        x = rng.random(64)
        x_hat = np.clip(x + 0.1 * rng.standard_normal(64), 0, 1)
        _psnr_close(
            answer(x, x_hat), x, x_hat, metrics.psnr(x, x_hat), what="a random digit-sized image and a noisy copy",
            rtol=1e-9, atol=1e-9,
        )  # fmt: skip


def _t_psnr_images(answer):
    rng = test_rng(6)
    x = rng.random((3, 8, 8))
    x_hat = x.copy()
    x_hat[0, 0, 0] += 0.5  # one wrong pixel out of 192
    _psnr_close(
        answer(x, x_hat), x, x_hat, 10 * math.log10(192 / 0.25), what="three 8x8 images with one pixel off by 0.5",
        hint="average the squared error over every pixel of every image", rtol=1e-9,
    )  # fmt: skip


def _t_psnr_identical(answer):
    x = test_rng(7).random(64)
    try:
        with np.errstate(divide="ignore"):
            got = float(answer(x, x.copy()))
    except ZeroDivisionError:
        raise CheckFailed(
            "identical images: your code divides by the MSE, which is 0 here (ZeroDivisionError). "
            "Hint: return math.inf when MSE is 0"
        ) from None
    if got != math.inf:
        raise CheckFailed(f"identical images: expected inf (MSE = 0), got {got}. Hint: return math.inf when MSE is 0")


# ---- 05.4 membership_auc ------------------------------------------------------------------------

_AUC_HINT = (
    "the attack says 'member' when the loss is low: AUC = fraction of (member, non-member) pairs where the "
    "member's loss is lower, counting ties as one half"
)


def _auc_close(answer, m, n, want, *, what, hint=_AUC_HINT, **tol):
    """``answer(m, n)`` must be ``want``; names the flipped direction, ties ignored or counted whole, index pairs."""
    got = answer(m, n)
    mm, nn = np.asarray(m, dtype=float)[:, None], np.asarray(n, dtype=float)[None, :]
    like = {"1 - AUC: the attack says 'member' when the loss is LOW, so count pairs where the member's is lower":
            np.mean((mm > nn) + 0.5 * (mm == nn))}  # fmt: skip
    if np.any(mm == nn):
        like["the AUC with ties not counted (m < n only): a tie counts one half"] = np.mean(mm < nn)
        like["the AUC with ties counted as a whole (m <= n): a tie counts one half"] = np.mean(mm <= nn)
    if len(m) == len(n):
        like["member i compared with non-member i only (index by index): compare every (member, non-member) pair, "
             "m[:, None] < n[None, :]"] = np.mean((m < n) + 0.5 * (m == n))  # fmt: skip
    expect_close(got, want, what=what, hint=hint, like=like, **tol)


def _t_auc_known(answer):
    _auc_close(answer, np.array([0.1, 0.2]), np.array([0.3, 0.4]), 1.0, what="members' losses all below non-members'")
    _auc_close(answer, np.array([0.9, 0.8]), np.array([0.3, 0.4]), 0.0, what="members' losses all above non-members'")
    _auc_close(
        answer, np.array([0.1, 0.5]), np.array([0.3, 0.9]), 0.75,
        what="members [0.1, 0.5], non-members [0.3, 0.9] (3 of 4 pairs right)",
    )  # fmt: skip


def _auc_reference(m, n):
    return metrics.roc_auc(np.r_[np.ones(len(m), int), np.zeros(len(n), int)], -np.r_[m, n])


def _t_auc_random(answer):
    rng = test_rng(8)
    m, n = rng.exponential(0.5, 40), rng.exponential(1.0, 55)
    _auc_close(answer, m, n, _auc_reference(m, n), what="40 members and 55 non-members (random losses)", rtol=1e-9)


def _t_auc_ties(answer):
    _auc_close(
        answer, np.array([0.5]), np.array([0.5]), 0.5, what="one member and one non-member with the same loss",
        hint="a tie counts one half",
    )  # fmt: skip
    rng = test_rng(9)
    m, n = np.round(rng.exponential(0.5, 300), 1), np.round(rng.exponential(1.0, 200), 1)  # many ties
    _auc_close(answer, m, n, _auc_reference(m, n), what="losses rounded to 0.1 (many ties)",
               hint="a tie counts one half", rtol=1e-9)  # fmt: skip


register(
    Exercise(
        "05.1",
        "the analytic attack: an input from a dense layer's gradient",
        "analytic_reconstruction",
        (
            Test("hand_example", _t_analytic_hand),
            Test("sigmoid_mlp_first_layer", _t_analytic_mlp),
            Test("dead_neurons", _t_analytic_dead_rows),
            Test("fedsgd_update", _t_analytic_update),
        ),
        hint=_ANALYTIC_HINT,
    ),
    Exercise(
        "05.2",
        "iDLG: the label from the output layer's gradient",
        "idlg_label",
        (
            Test("hand_example", _t_idlg_hand),
            Test("sigmoid_mlps", _t_idlg_sigmoid),
            Test("relu_cnns", _t_idlg_relu_cnn),
        ),
        hint=_IDLG_HINT,
    ),
    Exercise(
        "05.3",
        "PSNR of a reconstruction",
        "psnr",
        (
            Test("known_answers", _t_psnr_known),
            Test("random_images", _t_psnr_random),
            Test("batch_of_images", _t_psnr_images),
            Test("identical_images", _t_psnr_identical),
        ),
        hint=_PSNR_HINT,
    ),
    Exercise(
        "05.4",
        "the AUC of the loss-threshold membership attack",
        "membership_auc",
        (
            Test("known_answers", _t_auc_known),
            Test("random_losses", _t_auc_random),
            Test("ties", _t_auc_ties),
        ),
        hint=_AUC_HINT,
    ),
)
