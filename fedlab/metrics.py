"""How much leaked: reconstruction quality and membership-inference scores, in plain numpy.

Reconstruction quality compares an attacker's estimate ``x_hat`` with the true
input ``x`` (pixels in ``[0, data_range]``):

- :func:`psnr`, the peak signal-to-noise ratio
  ``10 log10(data_range^2 / MSE)`` in dB. For 8x8 digits in [0, 1], about
  15 dB still looks like a blurry digit, 20 dB is clearly the same digit and
  30 dB is hard to tell from the original;
- :func:`ssim`, the structural similarity index of Wang et al. (2004),
  computed as ``skimage.metrics.structural_similarity`` does by default
  (uniform ``win_size x win_size`` windows, sample covariances, ``K1 = 0.01``,
  ``K2 = 0.03``), over the windows that fit inside the image; 1 means identical.

Membership inference is a binary decision from a score (higher = "this example
was in the training set"). With ``labels`` 1 for members and 0 for
non-members:

- :func:`roc_curve` and :func:`roc_auc`, the area under the ROC curve (ties
  count one half, as in ``sklearn.metrics.roc_auc_score``); 0.5 is guessing;
- :func:`advantage`, ``max_t (TPR(t) - FPR(t))``, the membership advantage of
  Yeom et al. (2018) at the best threshold;
- :func:`tpr_at_fpr`, the true-positive rate at a low false-positive rate, the
  figure Carlini et al. (2022) argue matters ("does the attack confidently
  identify *some* members?");
- :func:`low_fpr_report`, the way that paper reports an attack: TPR at 0.1 %
  and 1 % FPR beside the AUC. With ``n0`` non-members the smallest FPR a
  threshold can have above zero is ``1 / n0`` (:func:`smallest_fpr`); a TPR
  asked for at an FPR below it is not measured, and is reported as ``nan``
  (never silently as the TPR at FPR 0). At an FPR just above ``1 / n0`` the
  figure rests on a handful of non-members' scores, hence the paper's advice
  of >= 10,000 non-members for 0.1 %.

This module imports only numpy.
"""

from __future__ import annotations

import math

import numpy as np

from fedlab import validate


def _pair(name_a: str, a, name_b: str, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{name_b} has shape {b.shape}: must match {name_a}'s shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name_a} is empty: need at least one value")
    return a, b


def psnr(x, x_hat, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of ``x_hat`` against ``x``, in dB.

    ``PSNR = 10 * log10(data_range**2 / mean((x - x_hat)**2))`` over all
    elements (pass one image at a time to get per-image values).

    Parameters
    ----------
    x
        The true input, any shape.
    x_hat
        The estimate, same shape as ``x``.
    data_range
        ``max - min`` of the pixel scale (1.0 for pixels in [0, 1]).

    Returns
    -------
    float
        ``inf`` when the two are identical.

    """
    x, x_hat = _pair("x", x, "x_hat", x_hat)
    r = validate.positive_float("data_range", data_range)
    mse = float(np.mean((x - x_hat) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(r * r / mse))


def _as_image(name: str, value) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 1:
        side = math.isqrt(a.size)
        if side * side != a.size:
            raise ValueError(f"{name} has {a.size} values: a flat image must be square (e.g. 64 for 8x8)")
        a = a.reshape(side, side)
    if a.ndim != 2:
        raise ValueError(f"{name} has shape {a.shape}: must be one image, [H, W] or flat [H*W]")
    return a


def _window_sums(a: np.ndarray, w: int) -> np.ndarray:
    """Sum over every ``w x w`` window that fits in ``a`` (integral image); shape ``[H-w+1, W-w+1]``."""
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]


def ssim(x, x_hat, *, data_range: float = 1.0, win_size: int = 7) -> float:
    """Structural similarity (Wang et al. 2004) of one image ``x_hat`` against ``x``.

    For every ``win_size x win_size`` window inside the image, with window
    means ``mu``, sample variances ``s^2`` and covariance ``s_xy``::

        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

    with ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``, ``R = data_range``, averaged
    over windows. This equals ``skimage.metrics.structural_similarity(x, x_hat,
    data_range=R, win_size=win_size)`` (whose border crop keeps exactly the
    windows that fit). An 8x8 digit with the default 7x7 window has 4 windows.

    Parameters
    ----------
    x, x_hat
        One image each, ``[H, W]`` or flat ``[H*W]`` (a square), same shape.
    data_range
        ``max - min`` of the pixel scale.
    win_size
        Odd window side, >= 3 and <= the image side.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical images.

    """
    a, b = _as_image("x", x), _as_image("x_hat", x_hat)
    if a.shape != b.shape:
        raise ValueError(f"x_hat has shape {b.shape}: must match x's shape {a.shape}")
    r = validate.positive_float("data_range", data_range)
    w = validate.positive_int("win_size", win_size, minimum=3)
    if w % 2 == 0 or w > min(a.shape):
        raise ValueError(f"win_size={w}: must be odd and at most the image side {min(a.shape)}")
    n = w * w
    mu_a, mu_b = _window_sums(a, w) / n, _window_sums(b, w) / n
    cov = n / (n - 1)  # sample (not population) covariance, as skimage's default
    var_a = (_window_sums(a * a, w) / n - mu_a**2) * cov
    var_b = (_window_sums(b * b, w) / n - mu_b**2) * cov
    cov_ab = (_window_sums(a * b, w) / n - mu_a * mu_b) * cov
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def _scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = validate.array("labels", labels, ndim=1)
    s = validate.array("scores", scores, ndim=1)
    if y.dtype.kind not in "biu" or not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels={np.unique(y)[:5].tolist()}...: must be 0 (non-member) or 1 (member)")
    if s.shape != y.shape:
        raise ValueError(f"scores has shape {s.shape}: must match labels' shape {y.shape}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores contains nan or inf: every score must be finite")
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError(f"labels has {int(y.sum())} members out of {y.size}: need both members and non-members")
    return y.astype(bool), s


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of the rule "member if score >= t", over every distinct threshold ``t``.

    Parameters
    ----------
    labels
        ``[n]`` ints, 1 for members (positives), 0 for non-members.
    scores
        ``[n]`` finite floats; higher means "more likely a member".

    Returns
    -------
    (fpr, tpr, thresholds)
        Each ``[m + 1]``: the first point is ``(0, 0)`` at threshold ``+inf``,
        then one point per distinct score in decreasing order, ending at
        ``(1, 1)``.

    """
    y, s = _scores(labels, scores)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s_sorted[last_of_tie]]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: ``P(score of a member > score of a non-member)``, ties counting 1/2.

    Computed from ranks (the Mann-Whitney U statistic divided by
    ``n_members * n_nonmembers``); equals ``sklearn.metrics.roc_auc_score``.
    """
    y, s = _scores(labels, scores)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size, dtype=np.float64)
    s_sorted = s[order]
    # average ranks (1-based) over ties
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
    ends = np.r_[starts[1:], s.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def advantage(labels, scores) -> float:
    """Membership advantage ``max_t (TPR(t) - FPR(t))`` at the best threshold (Yeom et al. 2018).

    0 for an attack no better than guessing, 1 for a perfect one.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.max(tpr - fpr))


def tpr_at_fpr(labels, scores, *, fpr: float = 0.01) -> float:
    """Highest true-positive rate among the thresholds whose false-positive rate is at most ``fpr``.

    With ``n0`` non-members the smallest non-zero FPR is ``1 / n0``: at
    ``fpr=0.01`` you need at least 100 non-members for the number to mean
    what it says.
    """
    target = validate.fraction("fpr", fpr, include_zero=True)
    f, t, _ = roc_curve(labels, scores)
    return float(t[f <= target + 1e-12].max())


LOW_FPRS = (0.001, 0.01)
"""The false-positive rates Carlini et al. (2022) report membership attacks at: 0.1 % and 1 %."""


def smallest_fpr(num_nonmembers: int) -> float:
    """``1 / num_nonmembers``: the smallest non-zero false-positive rate ``num_nonmembers`` can measure."""
    if isinstance(num_nonmembers, bool) or not isinstance(num_nonmembers, int | np.integer) or num_nonmembers < 1:
        raise ValueError(f"num_nonmembers={num_nonmembers!r}: must be an integer >= 1")
    return 1.0 / int(num_nonmembers)


def low_fpr_report(labels, scores, *, fprs=LOW_FPRS) -> dict:
    """AUC and TPR at low false-positive rates, as Carlini et al. (2022) report an attack.

    Parameters
    ----------
    labels, scores
        As for :func:`roc_curve` (1 = member; higher score = "more likely a member").
    fprs
        The false-positive rates, each in (0, 1] (default :data:`LOW_FPRS`).

    Returns
    -------
    dict
        ``{"auc": float, "tpr_at": {fpr: tpr}, "smallest_fpr": 1 / n0,
        "num_members": n1, "num_nonmembers": n0}``. ``tpr_at[f]`` is
        :func:`tpr_at_fpr` at ``f``, or ``nan`` when ``f < 1 / n0``: with
        ``n0`` non-members no threshold has an FPR in ``(0, 1 / n0)``, so such
        a TPR is not measured (and reporting the TPR at FPR 0 in its place
        would quietly change the question).

    """
    y, _ = _scores(labels, scores)
    fs = tuple(validate.fraction("fprs", f) for f in (fprs if isinstance(fprs, list | tuple) else [fprs]))
    if not fs:
        raise ValueError("fprs is empty: give at least one false-positive rate")
    n0, n1 = int((~y).sum()), int(y.sum())
    low = smallest_fpr(n0)
    f, t, _ = roc_curve(labels, scores)
    tpr_at = {fr: (float(t[f <= fr + 1e-12].max()) if fr >= low - 1e-12 else math.nan) for fr in fs}
    return {"auc": roc_auc(labels, scores), "tpr_at": tpr_at, "smallest_fpr": low, "num_members": n1,
            "num_nonmembers": n0}  # fmt: skip
