"""Known answers and oracles of server momentum (FedAvgM, fedlab.server_opt)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import fedavg, server_opt
from fedlab import params as P


def _params(seed, shapes=((3, 2), (2,))):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def test_known_answer_two_rounds():
    # zeros + an all-ones delta twice, beta 0.5, server_lr 1: v = 1 then 1.5; w = 1 then 2.5
    state = server_opt.init_momentum([np.zeros((2, 3), np.float32), np.zeros(3, np.float32)])
    ones = [np.ones((2, 3), np.float32), np.ones(3, np.float32)]
    state = server_opt.momentum_update(state, ones, server_lr=1.0, beta=0.5)
    assert all(np.allclose(v, 1.0) for v in state.velocity) and all(np.allclose(p, 1.0) for p in state.params)
    state = server_opt.momentum_update(state, ones, server_lr=1.0, beta=0.5)
    assert all(np.allclose(v, 1.5) for v in state.velocity) and all(np.allclose(p, 2.5) for p in state.params)
    assert state.round == 2


def test_beta_zero_is_fedavg_server_update():
    w, delta = _params(0), _params(1)
    a = server_opt.momentum_update(server_opt.init_momentum(w), delta, server_lr=0.3, beta=0.0)
    b = fedavg.server_update(fedavg.ServerState(w), delta, server_lr=0.3)
    assert P.allclose(a.params, b.params, atol=1e-7)


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(0.0, 0.99), server_lr=st.floats(0.01, 2.0), rounds=st.integers(1, 12))
def test_constant_delta_matches_the_geometric_series(beta, server_lr, rounds):
    # with a constant delta d: v_t = d (1 - beta^t) / (1 - beta); w_T = w_0 + lr * sum_t v_t
    w0, d = _params(2), _params(3)
    state = server_opt.init_momentum(w0)
    for _ in range(rounds):
        state = server_opt.momentum_update(state, d, server_lr=server_lr, beta=beta)
    coef_v = sum(beta**i for i in range(rounds))
    coef_w = server_lr * sum(sum(beta**i for i in range(t)) for t in range(1, rounds + 1))
    assert P.allclose(state.velocity, [coef_v * x for x in d], rtol=1e-4, atol=1e-4)
    assert P.allclose(state.params, [a + coef_w * x for a, x in zip(w0, d)], rtol=1e-4, atol=1e-3)


def test_inputs_are_not_modified():
    state = server_opt.MomentumState(_params(4), _params(5))
    copies = ([p.copy() for p in state.params], [v.copy() for v in state.velocity])
    delta = _params(6)
    server_opt.momentum_update(state, delta, server_lr=1.0, beta=0.9)
    assert P.allclose(state.params, copies[0], atol=0, rtol=0)
    assert P.allclose(state.velocity, copies[1], atol=0, rtol=0)


@pytest.mark.parametrize("beta", [1.0, 1.5, -0.1, float("nan"), "0.9"])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta="):
        server_opt.momentum_update(server_opt.init_momentum(_params(0)), _params(1), beta=beta)


def test_other_bad_inputs():
    state = server_opt.init_momentum(_params(0))
    with pytest.raises(ValueError, match="server_lr="):
        server_opt.momentum_update(state, _params(1), server_lr=0.0)
    with pytest.raises(ValueError, match=r"delta\[0\] has shape"):
        server_opt.momentum_update(state, _params(1, shapes=((2, 2), (2,))))
    with pytest.raises(ValueError, match="must be a MomentumState"):
        server_opt.momentum_update(fedavg.ServerState(_params(0)), _params(1))
