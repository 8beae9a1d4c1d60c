"""Check messages: array mismatches summarized (never dumped), numbers never cut, how many grading tests ran."""

import re

import numpy as np
import pytest

from fedlab import checks


def _message(got, want, **kwargs):
    with pytest.raises(checks.CheckFailed) as caught:
        checks.expect_close(got, want, what="x", **kwargs)
    return str(caught.value)


def test_a_large_mismatch_is_summarized_not_dumped():
    want = np.arange(18.0).reshape(3, 6)
    got = want.copy()
    got[1, 4] += 0.5
    msg = _message(got, want)
    assert "shape (3, 6)" in msg and "max abs error 0.5 at index [1, 4]" in msg and "max rel error" in msg
    assert "[[" not in msg  # no matrix printed


def test_ratio_and_sign_are_named():
    want = np.linspace(1.0, 2.0, 12)
    assert "yours is -1x the expected one: new - old, not old - new" in _message(
        -want, want, ratios={-1.0: "new - old, not old - new"}
    )
    assert "(the sign is flipped)" in _message(-want, want)
    assert "yours is 2x the expected one: call zero_grad" in _message(2 * want, want, ratios={2.0: "call zero_grad"})
    assert "x the expected one" not in _message(want + np.sin(np.arange(12)), want)


def test_a_known_wrong_answer_is_recognized():
    want, params = np.ones(10), np.full(10, 3.0)
    assert "yours looks like the parameters, not the delta" in _message(
        params + want, want, like={"the parameters, not the delta": params + want}
    )


def test_params_like_is_judged_over_all_tensors():
    want = [np.ones((2, 3)), np.ones(3)]
    with pytest.raises(checks.CheckFailed, match="over all 2 tensors, yours is -1x"):
        checks.expect_params_close([-w for w in want], want, what="delta")


@pytest.mark.parametrize("limit", [20, 41, 77])
def test_long_values_are_never_cut_mid_number(limit):
    text = checks._fmt(list(np.round(np.linspace(0.123456, 99.98765, 40), 5)), limit=limit)
    assert len(text) <= limit and text.endswith(" ...")
    body = text[: -len(" ...")]
    assert re.fullmatch(r"\[(\d+\.\d+, )*\d+\.\d+,?", body), body


def test_check_says_how_many_grading_tests_it_ran(capsys):
    ex = checks.get("02.4")

    def right(accuracies, target):
        return next((i + 1 for i, a in enumerate(accuracies) if a >= target), None)

    quick = sum(t.in_check for t in ex.tests)
    checks.check("02.4", right)
    out = capsys.readouterr().out
    assert f"{quick} of {len(ex.tests)} grading tests run here; check(..., thorough=True) runs all {len(ex.tests)}" in out
    checks.check("02.4", right, thorough=True)
    assert f"all {len(ex.tests)} grading tests run" in capsys.readouterr().out


def test_thorough_runs_the_tests_the_quick_check_skips():
    def last_crossing(accuracies, target):  # passes the quick tests, fails first_crossing (a grading-only test)
        hits = [i + 1 for i, a in enumerate(accuracies) if a >= target]
        return hits[-1] if hits and len(accuracies) != 3 else (hits[0] if hits else None)

    with pytest.raises(checks.CheckFailed, match="FIRST round"):
        checks.check("02.4", last_crossing, thorough=True)
    with pytest.raises(ValueError, match="thorough="):
        checks.check("02.4", last_crossing, thorough="yes")
