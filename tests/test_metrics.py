"""fedlab.metrics: known answers, oracle tests (scikit-learn, a plain-loop SSIM) and properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fedlab import metrics

# ---- PSNR ---------------------------------------------------------------------------------------


def test_psnr_known_answers():
    x = np.zeros(64)
    assert metrics.psnr(x, x) == math.inf
    assert metrics.psnr(x, np.full(64, 0.1)) == pytest.approx(20.0)  # MSE 0.01 -> 20 dB
    assert metrics.psnr(x, np.full(64, 0.01)) == pytest.approx(40.0)
    assert metrics.psnr(x, np.full(64, 2.55), data_range=255) == pytest.approx(40.0)


def test_psnr_symmetric_and_rejects_bad_input():
    rng = np.random.default_rng(0)
    a, b = rng.random(64), rng.random(64)
    assert metrics.psnr(a, b) == pytest.approx(metrics.psnr(b, a))
    with pytest.raises(ValueError, match="x_hat has shape"):
        metrics.psnr(a, b[:10])
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(a, b, data_range=0)


# ---- SSIM ---------------------------------------------------------------------------------------


def _ssim_loop(a, b, *, win, data_range=1.0):
    """Plain-loop SSIM over every window that fits (the definition, written naively)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i : i + win, j : j + win].ravel(), b[i : i + win, j : j + win].ravel()
            ma, mb = pa.mean(), pb.mean()
            va, vb = pa.var(ddof=1), pb.var(ddof=1)
            cov = ((pa - ma) * (pb - mb)).sum() / (pa.size - 1)
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


@pytest.mark.parametrize("shape,win", [((8, 8), 7), ((8, 8), 3), ((12, 10), 5), ((7, 7), 7)])
def test_ssim_matches_plain_loop(shape, win):
    rng = np.random.default_rng(shape[0] * win)
    a = rng.random(shape)
    b = np.clip(a + 0.2 * rng.standard_normal(shape), 0, 1)
    assert metrics.ssim(a, b, win_size=win) == pytest.approx(_ssim_loop(a, b, win=win), rel=1e-10, abs=1e-12)


def test_ssim_known_values():
    rng = np.random.default_rng(1)
    a = rng.random((8, 8))
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a.ravel(), a.ravel()) == pytest.approx(1.0)  # flat square images are accepted
    assert metrics.ssim(a, 1 - a) < 0  # the negative image is anti-correlated
    assert metrics.ssim(a, a + 0.05) < 1.0


def test_ssim_rejects_bad_input():
    a = np.zeros((8, 8))
    with pytest.raises(ValueError, match="win_size=4"):
        metrics.ssim(a, a, win_size=4)
    with pytest.raises(ValueError, match="win_size=9"):
        metrics.ssim(a, a, win_size=9)
    with pytest.raises(ValueError, match="square"):
        metrics.ssim(np.zeros(10), np.zeros(10))


# ---- ROC, AUC, advantage, TPR at low FPR ---------------------------------------------------------


def test_auc_known_answers():
    assert metrics.roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert metrics.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.roc_auc([1, 0], [0.5, 0.5]) == 0.5  # a tie counts one half
    # one member above both non-members, one between: (1 + 0.5 * 0 + 1) / 4 = 0.75
    assert metrics.roc_auc([1, 1, 0, 0], [0.9, 0.3, 0.5, 0.1]) == 0.75


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 60),
    seed=st.integers(0, 10_000),
    levels=st.sampled_from([None, 3, 10]),
)
def test_auc_and_roc_curve_match_sklearn(n, seed, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1  # both classes present
    s = rng.standard_normal(n) if levels is None else rng.integers(0, levels, n).astype(float)  # ties
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    # the area under our curve (trapezoids) is the AUC
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(metrics.roc_auc(y, s), abs=1e-12)


def test_advantage_and_tpr_at_fpr_known_answers():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([8, 7, 6, 2, 5, 4, 3, 1], dtype=float)
    # threshold 6: TPR 3/4, FPR 0 -> advantage 0.75
    assert metrics.advantage(y, s) == pytest.approx(0.75)
    assert metrics.tpr_at_fpr(y, s, fpr=0.0) == pytest.approx(0.75)
    assert metrics.tpr_at_fpr(y, s, fpr=0.25) == pytest.approx(0.75)
    assert metrics.tpr_at_fpr(y, s, fpr=0.75) == pytest.approx(1.0)
    assert metrics.advantage([1, 0], [0.0, 1.0]) == 0.0  # inverted scores: no advantage at any threshold


def test_random_scores_give_chance_level():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(5000, int), np.zeros(5000, int)]
    s = rng.random(10_000)
    assert metrics.roc_auc(y, s) == pytest.approx(0.5, abs=0.02)
    assert metrics.advantage(y, s) < 0.05
    assert metrics.tpr_at_fpr(y, s, fpr=0.01) == pytest.approx(0.01, abs=0.01)


@pytest.mark.parametrize(
    "labels,scores,match",
    [
        ([1, 1], [0.1, 0.2], "need both"),
        ([1, 2], [0.1, 0.2], "must be 0"),
        ([1, 0], [0.1], "scores has shape"),
        ([1, 0], [0.1, np.nan], "nan or inf"),
    ],
)
def test_roc_rejects_bad_input(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        metrics.roc_auc(labels, scores)


def test_tpr_at_fpr_rejects_bad_fpr():
    with pytest.raises(ValueError, match="fpr=1.5"):
        metrics.tpr_at_fpr([1, 0], [1.0, 0.0], fpr=1.5)


# ---- low-FPR report (issue 16.3: Carlini et al. 2022) -------------------------------------------


def test_low_fpr_report_known_answers():
    # 4 members scored 10, 9, 8, 0.9955; 1,000 non-members scored 0.001, 0.002, .., 1.000
    y = np.r_[np.ones(4, int), np.zeros(1000, int)]
    s = np.r_[10.0, 9.0, 8.0, 0.9955, np.arange(1, 1001) / 1000]
    r = metrics.low_fpr_report(y, s)
    assert r["smallest_fpr"] == 0.001 and (r["num_members"], r["num_nonmembers"]) == (4, 1000)
    # 0.1 %: one false positive allowed (the 1.000), threshold 1.0 -> 3 of 4 members;
    # 1 %: ten allowed (0.991 .. 1.000), threshold 0.991 -> the fourth member (0.9955) too
    assert r["tpr_at"] == {0.001: 0.75, 0.01: 1.0}
    assert r["auc"] == pytest.approx(metrics.roc_auc(y, s))
    # with 999 non-members 0.1 % is not measurable (1/999 > 0.001): nan, not the TPR at FPR 0 (0.75)
    r2 = metrics.low_fpr_report(y[:-1], s[:-1])
    assert math.isnan(r2["tpr_at"][0.001]) and r2["tpr_at"][0.01] == 1.0
    assert r2["smallest_fpr"] == pytest.approx(1 / 999)
    assert metrics.low_fpr_report(y[:-1], s[:-1], fprs=[1 / 999])["tpr_at"] == {1 / 999: 0.75}  # exactly 1/n0: ok


def test_low_fpr_report_rejects_bad_input():
    with pytest.raises(ValueError, match="fprs=0"):
        metrics.low_fpr_report([1, 0], [1.0, 0.0], fprs=(0, 0.01))
    with pytest.raises(ValueError, match="fprs is empty"):
        metrics.low_fpr_report([1, 0], [1.0, 0.0], fprs=())
    with pytest.raises(ValueError, match="need both"):
        metrics.low_fpr_report([1, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match="num_nonmembers=0"):
        metrics.smallest_fpr(0)


def _tpr_at_fpr_loop(y, s, fpr):
    """Plain loop: try every threshold t (member if score >= t); best TPR among those with FPR <= fpr."""
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        f = np.sum(pred & (y == 0)) / np.sum(y == 0)
        if f <= fpr + 1e-12:
            best = max(best, np.sum(pred & (y == 1)) / np.sum(y == 1))
    return best


@pytest.mark.parametrize("seed,levels", [(0, None), (1, None), (2, 7)])
def test_low_fpr_report_matches_sklearn_and_a_loop(seed, levels):
    rng = np.random.default_rng(seed)
    n1, n0 = 300, 2000
    y = np.r_[np.ones(n1, int), np.zeros(n0, int)]
    s = np.r_[rng.normal(0.5, 1, n1), rng.normal(0, 1, n0)]
    if levels is not None:
        s = np.round(s * levels) / levels  # ties
    r = metrics.low_fpr_report(y, s, fprs=(0.001, 0.005, 0.01, 0.1))
    sk_f, sk_t, _ = sk_roc_curve(y, s, drop_intermediate=False)
    for fpr, tpr in r["tpr_at"].items():
        assert tpr == pytest.approx(sk_t[sk_f <= fpr].max(), abs=1e-12)
        assert tpr == pytest.approx(_tpr_at_fpr_loop(y, s, fpr), abs=1e-12)
    assert r["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n1=st.integers(1, 40), n0=st.integers(1, 400), seed=st.integers(0, 2**31 - 1),
    fprs=st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=4),
)  # fmt: skip
def test_low_fpr_report_properties(n1, n0, seed, fprs):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n1, int), np.zeros(n0, int)]
    s = rng.integers(0, 20, n1 + n0).astype(float)
    r = metrics.low_fpr_report(y, s, fprs=fprs)
    assert r["smallest_fpr"] == pytest.approx(1 / n0)
    for fpr, tpr in r["tpr_at"].items():
        if fpr < 1 / n0 - 1e-12:
            assert math.isnan(tpr)  # not measurable with n0 non-members
        else:
            assert tpr == metrics.tpr_at_fpr(y, s, fpr=fpr) and 0 <= tpr <= 1
    got = sorted((f, t) for f, t in r["tpr_at"].items() if not math.isnan(t))
    assert all(a[1] <= b[1] for a, b in zip(got, got[1:]))  # TPR never falls as the allowed FPR grows
