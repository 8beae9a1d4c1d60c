"""Lesson 05's catalogued slips: the analytic attack, iDLG's label, PSNR, the membership AUC."""

from tests.mistakes import Mistake

_ANALYTIC_LS = "return db[good] @ dW[good] / (db[good] @ db[good])"
_PSNR_RETURN = 'return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))'
_AUC_RETURN = "return float(np.mean((m < n) + 0.5 * (m == n)))"

MISTAKES = [
    Mistake("05.1", "first_row_only", ("did not fire",), edits=((_ANALYTIC_LS, "return dW[0] / db[0]"),)),
    Mistake(
        "05.1",
        "averages_the_wrong_axis",
        ("the wrong axis", "divide the rows"),
        edits=((_ANALYTIC_LS, "return (dW[good] / db[good][:, None]).mean(axis=1)"),),
    ),
    Mistake("05.1", "not_divided_by_db", ("not divided by db",), edits=((_ANALYTIC_LS, "return dW[good][0]"),)),
    Mistake(
        "05.2",
        "argmax_not_argmin",
        ("largest sum",),
        edits=(("np.argmin(np.asarray(last_weight_grad).sum(axis=1))", "np.argmax(np.asarray(last_weight_grad).sum(axis=1))"),),
    ),
    Mistake(
        "05.2",
        "sums_the_columns",
        ("columns", "sum each row"),
        edits=(("np.asarray(last_weight_grad).sum(axis=1)", "np.asarray(last_weight_grad).sum(axis=0)"),),
    ),
    Mistake(
        "05.2",
        "returns_the_smallest_sum",
        ("expected a class index",),
        edits=(("return int(np.argmin(np.asarray(last_weight_grad).sum(axis=1)))",
                "return np.min(np.asarray(last_weight_grad).sum(axis=1))"),),
    ),
    Mistake("05.3", "natural_log", ("natural log",), edits=((_PSNR_RETURN, 'return float("inf") if mse == 0 else float(10 * np.log(1.0 / mse))'),)),
    Mistake("05.3", "twenty_log10", ("20 * log10",), edits=((_PSNR_RETURN, 'return float("inf") if mse == 0 else float(20 * np.log10(1.0 / mse))'),)),
    Mistake(
        "05.3",
        "sum_not_mean",
        ("not the sum",),
        edits=(("mse = float(np.mean((", "mse = float(np.sum(("),),
    ),
    Mistake("05.3", "no_infinite_case", ("divides by the mse",), edits=((_PSNR_RETURN, "return float(10 * np.log10(1.0 / mse))"),)),
    Mistake(
        "05.4",
        "high_loss_means_member",
        ("1 - auc", "loss is low"),
        edits=((_AUC_RETURN, "return float(np.mean((m > n) + 0.5 * (m == n)))"),),
    ),
    Mistake("05.4", "ties_not_counted", ("ties not counted",), edits=((_AUC_RETURN, "return float(np.mean(m < n))"),)),
    Mistake("05.4", "ties_counted_whole", ("ties counted as a whole",), edits=((_AUC_RETURN, "return float(np.mean(m <= n))"),)),
    Mistake(
        "05.4",
        "pairs_by_index",
        ("index by index",),
        edits=(("[:, None]\n", "\n"), ("[None, :]\n", "\n")),
    ),
]

PATHS = {
    "05.1": {
        "a dense layer's dW [out, in] and db [out], a batch of one": "hand_example",
        "whatever layers come after": "sigmoid_mlp_first_layer",
        "a neuron with g_i = 0 (a ReLU that did not fire)": "dead_neurons",
        "the learning rate cancels (an update, not a gradient)": "fedsgd_update",
    },
    "05.2": {
        "the label as an int from [num_classes, hidden]": "hand_example",
        "after a sigmoid": "sigmoid_mlps",
        "or a ReLU": "relu_cnns",
    },
    "05.3": {
        "PSNR = 10 log10(1 / MSE)": "known_answers",
        "pixels in [0, 1], any image": "random_images",
        "arrays of any shape (several images)": "batch_of_images",
        "identical inputs have infinite PSNR": "identical_images",
    },
    "05.4": {
        "P(member's loss < non-member's loss)": "known_answers",
        "every (member, non-member) pair, different counts": "random_losses",
        "ties count one half": "ties",
    },
}
