"""Lesson 04's catalogued slips: bytes on the wire, stochastic quantization, top-k, error feedback."""

from tests.mistakes import Mistake

MISTAKES = [
    Mistake(
        "04.1",
        "no_header",
        ("plus 8 bytes",),
        edits=(("math.ceil(math.prod(shape) * bits / 8) + 8", "math.ceil(math.prod(shape) * bits / 8)"),),
    ),
    Mistake(
        "04.1",
        "rounds_the_total_not_each_tensor",
        ("round up",),
        code="def quantized_bytes(shapes, *, bits):\n"
        "    return math.ceil(sum(math.prod(s) for s in shapes) * bits / 8) + 8 * len(shapes)\n",
    ),
    Mistake(
        "04.1",
        "bits_as_bytes",
        ("one byte per parameter",),
        edits=(("math.ceil(math.prod(shape) * bits / 8) + 8", "math.prod(shape) * bits + 8"),),
    ),
    Mistake(
        "04.2",
        "round_to_nearest",
        ("unbiased",),
        edits=(("codes = low + (g.random(x.shape) < t - low)", "codes = np.round(t)"),),
    ),
    Mistake(
        "04.2",
        "step_over_2_to_bits",
        ("2**bits - 1 gaps",),
        edits=(("step = (hi - lo) / (2**bits - 1)", "step = (hi - lo) / 2**bits"),),
    ),
    Mistake(
        "04.3",
        "largest_not_largest_magnitude",
        ("MAGNITUDE",),
        edits=(("np.argsort(-np.abs(flat), kind=\"stable\")", "np.argsort(-flat, kind=\"stable\")"),),
    ),
    Mistake(
        "04.3",
        "absolute_values_returned",
        ("signs kept",),
        edits=(("return indices, flat[indices]", "return indices, np.abs(flat[indices])"),),
    ),
    Mistake(
        "04.4",
        "topk_of_delta_alone",
        ("not of delta alone",),
        edits=(("\n    sent = compress.densify(compress.topk(corrected, fraction=fraction))",
                "\n    sent = compress.densify(compress.topk(np.asarray(delta, dtype=np.float32), fraction=fraction))"),),
    ),
    Mistake(
        "04.4",
        "residual_is_delta_minus_sent",
        ("delta - sent", "(delta + residual) - sent"),
        edits=(("return sent, corrected - sent", "return sent, np.asarray(delta, dtype=np.float32) - sent"),),
    ),
]

PATHS = {
    "04.1": {"bits per entry plus 8 bytes per tensor": "mlp_8_bits", "round up per tensor": "odd_sizes"},
    "04.2": {
        "codes in 0 .. 2**bits - 1": "codes_in_range",
        "error at most one step": "error_at_most_one_step",
        "stochastic rounding is unbiased": "unbiased",
        "the rng argument": "seeded",
    },
    "04.3": {"largest magnitude, signs kept": "known_answer", "indices into x.ravel()": "matrix_flattened"},
    "04.4": {"top-k of delta + residual": "known_two_rounds", "nothing lost: residual = corrected - sent": "conserves_the_sum"},
}
