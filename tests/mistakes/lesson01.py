"""Lesson 01's catalogued slips: standardizing, centralized SGD, accuracy by group, unique rows."""

from tests.mistakes import Mistake

MISTAKES = [
    Mistake("01.1", "sample_std", ("ddof",), edits=(("scale = x.std(axis=0)", "scale = x.std(axis=0, ddof=1)"),)),
    Mistake(
        "01.1",
        "std_equals_zero",
        ("not with exactly 0",),
        edits=(("scale[scale < 1e-8] = 1.0", "scale[scale == 0] = 1.0"),),
    ),
    Mistake("01.1", "row_means", ("axis=0",), edits=(("center = x.mean(axis=0)", "center = x.mean(axis=1)"),)),
    Mistake(
        "01.2",
        "sum_not_mean_gradient",
        ("summed over the batch", "batch size"),
        edits=(("            g /= len(idx)\n", ""),),
    ),
    Mistake(
        "01.2",
        "one_order_for_all_epochs",
        ("one shuffle for all epochs",),
        edits=(
            ("    for _ in range(epochs):\n        order = gen.permutation(n)\n",
             "    order = gen.permutation(n)\n    for _ in range(epochs):\n"),
        ),
    ),
    Mistake(
        "01.2",
        "no_shuffle",
        ("rows' own order", "permutation"),
        edits=(("        order = gen.permutation(n)\n", "        order = np.arange(n)\n"),),
    ),
    Mistake(
        "01.3",
        "divide_by_all_rows",
        ("size of the group",),
        edits=(("float(np.mean(y_pred[mask] == y_true[mask]))", "float(np.sum(y_pred[mask] == y_true[mask]) / len(y_true))"),),
    ),
    Mistake(
        "01.3",
        "overall_accuracy_per_group",
        ("overall accuracy", "its own rows"),
        edits=(("float(np.mean(y_pred[mask] == y_true[mask]))", "float(np.mean(y_pred == y_true))"),),
    ),
    Mistake(
        "01.3",
        "every_possible_group",
        ("one entry per group that occurs",),
        edits=(
            ("    for g in np.unique(group):\n        mask = group == g\n        result[g.item()] = ",
             "    for g in np.arange(group.max() + 2):\n        mask = group == g\n        result[g.item()] = "),
        ),
    ),
    Mistake(
        "01.4",
        "all_columns",
        ("all the table's columns", "only the columns named"),
        edits=(("for c in columns)", "for c in table)"),),
    ),
    Mistake(
        "01.4",
        "unique_values_not_people",
        ("PEOPLE",),
        edits=(("float(np.mean([counts[r] == 1 for r in rows]))",
                "sum(1 for r in counts if counts[r] == 1) / len(counts)"),),
    ),
]

PATHS = {
    "01.1": {
        "column means and population std": "known_answer",
        "std below 1e-8 gets scale 1": "constant_column",
        "(x - center) / scale is standardized": "standardizes",
    },
    "01.2": {
        "one full-batch step": "full_batch_step",
        "several epochs": "several_steps",
        "minibatches with a smaller last batch, reshuffled each epoch": "minibatches",
    },
    "01.3": {
        "each group's own rows": "known_answer",
        "the average hides a group": "average_hides_a_group",
        "only groups that occur": "only_groups_present",
    },
    "01.4": {"people whose combination is unique": "known_answer", "only the given columns": "uses_given_columns"},
}
