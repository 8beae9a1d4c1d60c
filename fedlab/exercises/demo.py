"""Lesson 99, the grader's demo lesson: three tiny exercises that run in microseconds.

Not part of the course. Its source notebook is ``tests/fixtures/99_demo.ipynb``;
the tests build its student copy, make submissions from it and grade them, so
the course machinery (:mod:`fedlab.course`, :mod:`fedlab.grader`) is tested
without waiting for a real lesson's data or models.

- 99.1 ``weighted_mean(values, weights)``: the weighted average that FedAvg's
  aggregation is made of, sum_k w_k v_k / sum_k w_k.
- 99.2 ``clip_norm(v, max_norm)``: scale a vector down to L2 norm at most
  ``max_norm`` (the clipping step of DP-FedAvg), leaving short vectors alone.
- 99.3 ``count_parameters(shapes)``: how many numbers a model with these
  tensor shapes sends per round.
"""

from __future__ import annotations

import numpy as np

from fedlab.checks import CheckFailed, Exercise, Test, expect_close, expect_equal, register, test_rng


def reference_weighted_mean(values, weights) -> float:
    """The weighted mean of ``values`` (shape ``(n,)``) with non-negative ``weights`` (shape ``(n,)``)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    return float(np.sum(weights * values) / np.sum(weights))


def reference_clip_norm(v, max_norm: float) -> np.ndarray:
    """``v`` scaled by ``min(1, max_norm / ||v||_2)``; the zero vector stays zero."""
    v = np.asarray(v, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    return v if norm <= max_norm else v * (max_norm / norm)


def reference_count_parameters(shapes) -> int:
    """The total number of entries of tensors with these shapes (a scalar's shape ``()`` counts 1)."""
    return int(sum(int(np.prod(s, dtype=np.int64)) for s in shapes))


# ---- 99.1 -------------------------------------------------------------------------------------


def _wm_equal_weights(answer):
    expect_close(answer([1.0, 2.0, 3.0], [1, 1, 1]), 2.0, what="weighted_mean([1, 2, 3], [1, 1, 1])")


def _wm_unequal_weights(answer):
    expect_close(
        answer([1.0, 3.0], [1, 3]),
        2.5,
        what="weighted_mean([1, 3], [1, 3])",
        hint="a client with 3 examples counts three times as much as one with 1: (1*1 + 3*3) / 4.",
    )


def _wm_numpy_inputs(answer):
    rng = test_rng(99)
    values, weights = rng.standard_normal(50), rng.integers(1, 100, size=50)
    expect_close(answer(values, weights), reference_weighted_mean(values, weights), what="weighted_mean on arrays")


def _wm_scale_free(answer):
    a, b = answer([2.0, 4.0], [1, 2]), answer([2.0, 4.0], [1000, 2000])
    expect_close(b, a, what="multiplying every weight by 1000", hint="divide by the sum of the weights.")


# ---- 99.2 -------------------------------------------------------------------------------------


def _clip_short_unchanged(answer):
    expect_close(answer(np.array([0.3, 0.4]), 1.0), [0.3, 0.4], what="clip_norm([0.3, 0.4], 1.0) (norm 0.5)")


def _clip_long_scaled(answer):
    expect_close(
        answer(np.array([3.0, 4.0]), 1.0),
        [0.6, 0.8],
        what="clip_norm([3, 4], 1.0) (norm 5)",
        hint="multiply by max_norm / norm when the norm is too large.",
    )


def _clip_zero_vector(answer):
    got = np.asarray(answer(np.zeros(3), 1.0), dtype=np.float64)
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"clip_norm(zeros(3), 1.0) returned {got}; dividing by a zero norm gives nan.")
    expect_close(got, np.zeros(3), what="clip_norm(zeros(3), 1.0)")


def _clip_random(answer):
    rng = test_rng(7)
    for _ in range(5):
        v, c = rng.standard_normal(6) * 3, float(rng.uniform(0.5, 4.0))
        expect_close(answer(v, c), reference_clip_norm(v, c), what=f"clip_norm of a random 6-vector at {c:.2f}")


# ---- 99.3 -------------------------------------------------------------------------------------


def _count_mlp(answer):
    expect_equal(answer([(64, 128), (128,), (128, 10), (10,)]), 9610, what="count_parameters of an MLP 64-128-10")


def _count_scalar_and_empty(answer):
    expect_equal(answer([(), (3, 0)]), 1, what="count_parameters([(), (3, 0)])", hint="a scalar is one number.")


EXERCISES = (
    Exercise(
        id="99.1",
        title="weighted mean",
        answer="weighted_mean",
        tests=(
            Test("equal_weights", _wm_equal_weights),
            Test("unequal_weights", _wm_unequal_weights, points=2.0),
            Test("numpy_inputs", _wm_numpy_inputs, in_check=False),
            Test("scale_free", _wm_scale_free, in_check=False),
        ),
        hint="sum of weight * value, divided by the sum of the weights.",
    ),
    Exercise(
        id="99.2",
        title="clip a vector's norm",
        answer="clip_norm",
        tests=(
            Test("short_unchanged", _clip_short_unchanged),
            Test("long_scaled", _clip_long_scaled),
            Test("zero_vector", _clip_zero_vector, in_check=False),
            Test("random", _clip_random, in_check=False),
        ),
        hint="scale by min(1, max_norm / norm), and leave a zero vector alone.",
    ),
    Exercise(
        id="99.3",
        title="count parameters",
        answer="count_parameters",
        tests=(
            Test("mlp", _count_mlp),
            Test("scalar_and_empty", _count_scalar_and_empty, in_check=False),
        ),
        hint="multiply out each shape, then add.",
    ),
)

register(*EXERCISES)
