"""fedlab.attacks: known answers (the analytic attack is exact, iDLG labels are right), the paper-level
reconstructions (above 30 dB for a single digit through the sigmoid MLP and CNN), oracle tests and errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedlab import attacks, data, defences, fedavg, metrics, models

SIG_MLP = models.mlp(64, (32,), 10, activation="sigmoid")
SIG_CNN = models.cnn(64, (8, 16), 10, activation="sigmoid")


@pytest.fixture(scope="module")
def digits():
    d = data.load_digits()
    return np.array(d.x, dtype=np.float32), np.array(d.y)


# ---- gradients and updates ----------------------------------------------------------------------


def test_model_gradient_matches_torch_module():
    spec = models.mlp(64, (16,), 10, activation="tanh")
    params = models.init_params(spec, rng=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 64)), np.array([1, 4, 9])
    module = models.build(spec, params, dtype=torch.float64)
    F.cross_entropy(module(torch.as_tensor(x)), torch.as_tensor(y)).backward()
    for got, p in zip(attacks.model_gradient(spec, params, x, y), module.parameters()):
        np.testing.assert_allclose(got, p.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_local_update_matches_fedavg_full_batch():
    """Oracle: K full-batch steps equal fedavg.local_sgd with batch_size=None and E=K."""
    spec = models.mlp(64, (16,), 10, activation="sigmoid")
    params = models.init_params(spec, rng=1)
    rng = np.random.default_rng(1)
    x, y = rng.random((5, 64)).astype(np.float32), rng.integers(0, 10, 5)
    want = fedavg.local_sgd(spec, params, x, y, orders=np.tile(np.arange(5), (3, 1)), batch_size=None, lr=0.3).delta
    got = attacks.local_update(spec, params, x, y, lr=0.3, steps=3)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=2e-6)


def test_pseudo_gradient_of_one_step_is_the_gradient():
    spec = models.mlp(64, (16,), 10)
    params = models.init_params(spec, rng=2)
    x, y = np.random.default_rng(2).random((2, 64)), np.array([3, 5])
    delta = attacks.local_update(spec, params, x, y, lr=0.5, steps=1)
    for a, b in zip(attacks.pseudo_gradient(delta, lr=0.5, steps=1), attacks.model_gradient(spec, params, x, y)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


# ---- the analytic attack: exact -----------------------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("seed", range(5))
def test_analytic_reconstruction_is_exact_for_one_input(activation, seed):
    spec = models.mlp(64, (32, 16), 10, activation=activation)
    params = models.init_params(spec, rng=seed)
    rng = np.random.default_rng(seed)
    x, y = rng.random((1, 64)), rng.integers(0, 10, 1)
    g = attacks.model_gradient(spec, params, x, y)
    np.testing.assert_allclose(attacks.analytic_reconstruction(g[0], g[1]), x[0], rtol=1e-9, atol=1e-12)
    # a FedSGD update is -lr times the gradient: the scale cancels
    np.testing.assert_allclose(attacks.analytic_reconstruction(-0.1 * g[0], -0.1 * g[1]), x[0], atol=1e-12)
    cands, rows = attacks.analytic_candidates(g[0], g[1])
    assert len(rows) > 0
    np.testing.assert_allclose(cands, np.broadcast_to(x[0], cands.shape), rtol=1e-6, atol=1e-8)


def test_analytic_reconstruction_of_a_hand_example():
    x = np.array([0.0, 0.5, 1.0])
    g = np.array([2.0, -1.0])  # dL/dz for two neurons
    np.testing.assert_allclose(attacks.analytic_reconstruction(np.outer(g, x), g), x)


def test_analytic_reconstruction_errors():
    with pytest.raises(ValueError, match="carries no input"):
        attacks.analytic_reconstruction(np.ones((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="db has 3 entries"):
        attacks.analytic_reconstruction(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="dW has shape"):
        attacks.analytic_reconstruction(np.ones(3), np.ones(3))


# ---- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        models.mlp(64, (32,), 10, activation="sigmoid"),
        models.mlp(64, (32,), 10, activation="relu"),
        models.mlp(64, (32,), 10, activation="tanh"),
        models.cnn(64, (4, 8), 10, activation="relu"),
        models.logreg(64, 10),
    ],
    ids=["sigmoid-mlp", "relu-mlp", "tanh-mlp", "relu-cnn", "logreg"],
)
def test_idlg_label_right_on_many_random_cases(spec):
    rng = np.random.default_rng(7)
    wrong_w, wrong_b = [], []
    for case in range(100):
        params = models.init_params(spec, rng=case)
        x, y = rng.random((1, 64)), rng.integers(0, 10, 1)
        g = attacks.model_gradient(spec, params, x, y)
        if attacks.idlg_label(g[-2]) != y[0]:
            wrong_w.append(case)
        if attacks.idlg_label(g[-2], last_bias_grad=g[-1]) != y[0]:
            wrong_b.append(case)
    assert wrong_b == [], f"label from the bias gradient wrong in cases {wrong_b}"
    assert wrong_w == [], f"label from the weight gradient wrong in cases {wrong_w}"


def test_idlg_label_of_a_hand_example():
    h = np.array([0.2, 0.7, 0.1])
    g = np.array([0.1, -0.3, 0.2])  # p - onehot(1)
    assert attacks.idlg_label(np.outer(g, h)) == 1
    assert attacks.idlg_label(np.outer(g, -h)) == 1  # negative activations: the sign pattern still finds it
    assert attacks.idlg_label(np.outer(g, h), last_bias_grad=g) == 1


def test_batch_labels_recovers_repeated_labels(digits):
    x_all, y_all = digits
    rng = np.random.default_rng(0)
    wrong = []
    for case in range(60):
        spec = [SIG_MLP, models.mlp(64, (32,), 10), SIG_CNN][case % 3]
        params = models.init_params(spec, rng=case)
        idx = rng.choice(len(y_all), size=int(rng.integers(2, 9)), replace=False)
        g = attacks.model_gradient(spec, params, x_all[idx], y_all[idx])
        got = attacks.batch_labels(g[-1], num_images=len(idx), mean_probs=attacks.mean_probs(spec, params, rng=case))
        if not np.array_equal(got, np.sort(y_all[idx])):
            wrong.append((case, got.tolist(), sorted(y_all[idx].tolist())))
    assert len(wrong) <= 2, wrong


def test_batch_labels_known_answer():
    pbar = np.full(4, 0.25)
    counts = np.array([2, 0, 1, 1])
    db = pbar - counts / 4
    np.testing.assert_array_equal(attacks.batch_labels(db, num_images=4, mean_probs=pbar), [0, 0, 2, 3])


# ---- optimisation attacks -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", [SIG_MLP, SIG_CNN], ids=["sigmoid-mlp", "sigmoid-cnn"])
@pytest.mark.parametrize("index", [0, 5])
def test_dlg_rebuilds_a_single_digit_above_30_db(digits, spec, index):
    x_all, y_all = digits
    x, y = x_all[index : index + 1], y_all[index : index + 1]
    params = models.init_params(spec, rng=0)
    g = attacks.model_gradient(spec, params, x, y)
    rec = attacks.invert_gradients(spec, params, g, max_evals=300, rng=0)
    assert rec.labels.tolist() == y.tolist()  # iDLG inside
    q = attacks.reconstruction_quality(x, rec.x)
    assert q.mean_psnr > 30, f"PSNR {q.mean_psnr:.1f} dB after {rec.evaluations} evaluations"
    assert q.mean_ssim > 0.9
    assert rec.evaluations <= 300


def test_dlg_squared_loss_also_works_and_is_deterministic(digits):
    x_all, y_all = digits
    x, y = x_all[3:4], y_all[3:4]
    params = models.init_params(SIG_MLP, rng=1)
    g = attacks.model_gradient(SIG_MLP, params, x, y)
    a = attacks.invert_gradients(SIG_MLP, params, g, loss="l2", max_evals=200, rng=5)
    b = attacks.invert_gradients(SIG_MLP, params, g, loss="l2", max_evals=200, rng=5)
    np.testing.assert_array_equal(a.x, b.x)
    assert attacks.reconstruction_quality(x, a.x).mean_psnr > 30


def test_dlg_batch_of_four_sigmoid_mlp(digits):
    x_all, y_all = digits
    x, y = x_all[20:24], y_all[20:24]
    params = models.init_params(SIG_MLP, rng=0)
    g = attacks.model_gradient(SIG_MLP, params, x, y)
    rec = attacks.invert_gradients(SIG_MLP, params, g, num_images=4, max_evals=300, rng=0)
    np.testing.assert_array_equal(rec.labels, np.sort(y))
    assert attacks.reconstruction_quality(x, rec.x).psnr.min() > 30


def test_clipping_does_not_stop_the_cosine_attacker_but_fools_the_naive_one(digits):
    x_all, y_all = digits
    x, y = x_all[7:8], y_all[7:8]
    params = models.init_params(SIG_MLP, rng=0)
    g = attacks.model_gradient(SIG_MLP, params, x, y)
    clipped = defences.clip_update(g, max_norm=0.01)
    cos = attacks.invert_gradients(SIG_MLP, params, clipped, loss="cosine", max_evals=200, rng=0)
    l2 = attacks.invert_gradients(SIG_MLP, params, clipped, loss="l2", max_evals=200, rng=0)
    assert attacks.reconstruction_quality(x, cos.x).mean_psnr > 30
    assert attacks.reconstruction_quality(x, l2.x).mean_psnr < 20


def test_mask_aware_attacker_beats_naive_one_against_pruning(digits):
    x_all, y_all = digits
    x, y = x_all[3:4], y_all[3:4]
    params = models.init_params(SIG_MLP, rng=0)
    pruned = defences.topk_mask(attacks.model_gradient(SIG_MLP, params, x, y), fraction=0.5)
    mask = [p != 0 for p in pruned]
    naive = attacks.invert_gradients(SIG_MLP, params, pruned, max_evals=300, rng=0)
    aware = attacks.invert_gradients(SIG_MLP, params, pruned, mask=mask, max_evals=300, rng=0)
    p_naive = attacks.reconstruction_quality(x, naive.x).mean_psnr
    p_aware = attacks.reconstruction_quality(x, aware.x).mean_psnr
    assert p_aware > 30 and p_aware > p_naive + 10, (p_naive, p_aware)


def test_unrolled_attack_rebuilds_a_fedavg_update_the_pseudo_gradient_misses(digits):
    x_all, y_all = digits
    x, y = x_all[10:11], y_all[10:11]
    params = models.init_params(SIG_MLP, rng=0)
    orders = np.tile(np.arange(1), (5, 1))
    delta = fedavg.local_sgd(SIG_MLP, params, x, y, orders=orders, batch_size=None, lr=0.1).delta  # float32, as sent
    un = attacks.invert_update(SIG_MLP, params, delta, lr=0.1, steps=5, method="unrolled", max_evals=100, rng=0)
    ps = attacks.invert_update(SIG_MLP, params, delta, lr=0.1, steps=5, method="pseudo_gradient", max_evals=100)
    p_un = attacks.reconstruction_quality(x, un.x).mean_psnr
    p_ps = attacks.reconstruction_quality(x, ps.x).mean_psnr
    assert p_un > 30 and p_un > p_ps, (p_un, p_ps)
    assert un.labels.tolist() == y.tolist()


def test_invert_errors_name_the_argument():
    params = models.init_params(SIG_MLP, rng=0)
    g = [np.zeros_like(p) for p in params]
    with pytest.raises(ValueError, match="loss='mse'"):
        attacks.invert_gradients(SIG_MLP, params, g, loss="mse")
    with pytest.raises(ValueError, match="num_images=0"):
        attacks.invert_gradients(SIG_MLP, params, g, num_images=0)
    with pytest.raises(ValueError, match=r"target has 3 tensors"):
        attacks.invert_gradients(SIG_MLP, params, g[:3])
    with pytest.raises(ValueError, match="labels has 1 labels"):
        attacks.invert_gradients(SIG_MLP, params, g, num_images=2, labels=[1])
    with pytest.raises(ValueError, match="mask selects no entry"):
        attacks.invert_gradients(SIG_MLP, params, g, mask=[np.zeros(p.shape, bool) for p in params])
    with pytest.raises(ValueError, match="method='replay'"):
        attacks.invert_update(SIG_MLP, params, g, lr=0.1, steps=2, method="replay")
    with pytest.raises(ValueError, match="lr=0"):
        attacks.invert_update(SIG_MLP, params, g, lr=0, steps=2)


# ---- quality ------------------------------------------------------------------------------------


def test_reconstruction_quality_pairs_images_and_clips():
    rng = np.random.default_rng(0)
    x = rng.random((5, 64))
    perm = np.array([3, 0, 4, 1, 2])
    q = attacks.reconstruction_quality(x, x[perm])
    np.testing.assert_array_equal(x[perm][q.order], x)
    assert np.all(np.isinf(q.psnr)) and np.allclose(q.ssim, 1.0)
    q2 = attacks.reconstruction_quality(x[:1], x[:1] + 5.0)  # clipped to 1 before scoring
    assert np.isfinite(q2.psnr[0])


# ---- membership inference ----------------------------------------------------------------------


def test_loss_threshold_attack_known_answers():
    perfect = attacks.loss_threshold_attack([0.01, 0.02, 0.03], [1.0, 2.0, 3.0])
    assert (perfect.auc, perfect.advantage, perfect.tpr_at_fpr) == (1.0, 1.0, 1.0)
    inverted = attacks.loss_threshold_attack([1.0, 2.0], [0.1, 0.2])
    assert inverted.auc == 0.0 and inverted.advantage == 0.0
    rng = np.random.default_rng(0)
    same = attacks.loss_threshold_attack(rng.exponential(size=4000), rng.exponential(size=4000))
    assert same.auc == pytest.approx(0.5, abs=0.02) and same.advantage < 0.05
    assert same.num_members == 4000 and same.fpr == 0.01


def test_summarize_mean_and_spread():
    rs = [attacks.loss_threshold_attack([0.1, 0.5], [0.3, 0.9]), attacks.loss_threshold_attack([0.1], [0.3])]
    s = attacks.summarize(rs)
    assert s["auc"][0] == pytest.approx((0.75 + 1.0) / 2)
    assert s["auc"][1] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    assert attacks.summarize(rs[:1])["auc"] == (0.75, 0.0)
    with pytest.raises(ValueError, match="results is empty"):
        attacks.summarize([])


def test_per_example_loss_matches_evaluate():
    spec = models.mlp(64, (16,), 10)
    params = models.init_params(spec, rng=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 64)).astype(np.float32), rng.integers(0, 10, 20)
    losses = attacks.per_example_loss(spec, params, x, y)
    assert losses.shape == (20,)
    assert losses.mean() == pytest.approx(models.evaluate(spec, params, x, y)[0], rel=1e-5)


def test_membership_attack_separates_an_overfitted_model(digits):
    """Smoke: a model trained to zero loss on 60 digits leaks membership (AUC well above 0.5)."""
    x_all, y_all = digits
    spec = models.mlp(64, (64,), 10)
    members, nonmembers = np.arange(60), np.arange(1000, 1200)
    params, _ = fedavg.run(spec, [(x_all[members], y_all[members])], rounds=40, seed=0, epochs=5, batch_size=10, lr=0.2)
    r = attacks.loss_threshold_attack(
        attacks.per_example_loss(spec, params, x_all[members], y_all[members]),
        attacks.per_example_loss(spec, params, x_all[nonmembers], y_all[nonmembers]),
    )
    assert r.auc > 0.7 and r.advantage > 0.3


def test_membership_result_reports_tpr_at_low_fpr():
    """Issue 16.3: TPR at 0.1 % and 1 % FPR beside the AUC, nan where too few non-members measure it."""
    rng = np.random.default_rng(0)
    lm, ln = rng.exponential(0.5, size=500), rng.exponential(1.0, size=2000)
    r = attacks.loss_threshold_attack(lm, ln)
    assert set(r.tpr_at) == {0.001, 0.01} and r.smallest_fpr == 1 / 2000
    labels, scores = np.r_[np.ones(500, int), np.zeros(2000, int)], -np.r_[lm, ln]
    for f, t in r.tpr_at.items():
        assert t == metrics.tpr_at_fpr(labels, scores, fpr=f)
    assert r.tpr_at[0.01] == r.tpr_at_fpr
    few = attacks.loss_threshold_attack(lm, ln[:300])  # smallest FPR 1/300: 0.1 % is not measurable
    assert math.isnan(few.tpr_at[0.001]) and not math.isnan(few.tpr_at[0.01])
    text = few.describe()
    assert "not measurable at 0.1 % FPR" in text and "smallest measurable FPR 0.333 %" in text
    s = attacks.summarize([r, r])
    assert s["tpr_at_0.01"] == (r.tpr_at[0.01], 0.0) and s["tpr_at_0.001"] == (r.tpr_at[0.001], 0.0)
    assert math.isnan(attacks.summarize([few])["tpr_at_0.001"][0])
    assert attacks.loss_threshold_attack(lm, ln, low_fprs=(0.05,)).tpr_at.keys() == {0.05}
