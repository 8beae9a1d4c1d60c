"""No drift between a lesson's text and its numbers (issue 18, point 5).

Two checks:

- student copies never point at content that only the solutions hold ("our list", "the solution below");
- every figure a lesson's markdown quotes from its own run is read back from the executed outputs: :data:`QUOTES`
  pairs a phrase of the markdown (a regular expression whose groups are the quoted numbers) with the output line
  it comes from (groups: the printed numbers). :func:`drift` compares them within the quote's rounding;
  ``tests/test_notebooks.py`` calls it on every solution notebook it executes, so a change that moves a number
  fails there, and :func:`test_every_quote_is_still_in_its_lesson` (no execution) fails when the text is
  reworded without its quote. Figures a lesson cannot read back (wall times, the benchmarks' multi-seed
  means) are not listed; timings in the README come from ``benchmarks/readme_timings.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fedlab import course

SOLUTION_ONLY = re.compile(r"\b(our (list|answer|solution)s?|the solution (below|above))\b", re.IGNORECASE)
"""Phrases that refer to an answer the solution notebook shows and the student copy strips."""

STUDENTS = sorted(course.NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", STUDENTS, ids=[p.stem for p in STUDENTS])
def test_student_copy_refers_to_nothing_it_lacks(path):
    nb = course.read_notebook(path)
    hits = [m.group(0) for c in nb.cells if c.cell_type == "markdown" for m in SOLUTION_ONLY.finditer(c.source)]
    assert not hits, f"{path.name} refers to content only the solution holds: {hits}"


def test_the_phrase_check_can_fail():
    assert SOLUTION_ONLY.search("Before reading our list, write your own")


# ---- figures quoted in the text, read back from the executed outputs ------------------------------------


@dataclass(frozen=True)
class Quote:
    """A figure (or a few) that a lesson's markdown quotes, and the output it comes from.

    Attributes
    ----------
    text
        Regular expression on the lesson's markdown (whitespace collapsed to single spaces); each group is a
        quoted number.
    output
        Regular expression on the executed text outputs (whitespace collapsed); each group is a printed number.
    tol
        How far a quoted figure may be from the printed one: its rounding (0.005 for two decimals) or, for an
        "about", what the sentence still holds with; ``None``: each figure's own rounding (half a unit of its
        last quoted digit).
    figures
        Maps the output's numbers to the quoted figures (e.g. a difference in points); default: as printed.
    """

    text: str
    output: str
    tol: float | None
    figures: Callable[..., tuple] | None = None


_NUM = r"([-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?)"


def _table_row(label: str, n: int = 4) -> str:
    return re.escape(label) + "".join(rf" {_NUM}" for _ in range(n)) + r"(?![\d.])"


QUOTES: dict[str, list[Quote]] = {
    "05_leakage.ipynb": [
        Quote(rf"The spread over seeds is about {_NUM}-{_NUM} in AUC",
              rf"overfitted [\d.]+ [\d.]+ [\d.]+ ± {_NUM} .*? well generalised [\d.]+ [\d.]+ [\d.]+ ± {_NUM}", 0.005,
              figures=lambda a, b: (min(a, b), max(a, b))),
        Quote(rf"even against the overfitted model it is close to {_NUM}%",
              rf"overfitted [\d.]+ [\d.]+ [\d.]+ ± [\d.]+ [\d.]+ ± [\d.]+ (?:not measurable )?{_NUM} ±", 0.5, figures=lambda t: (100 * t,)),
        Quote(rf"Membership \(5 seeds\): AUC {_NUM} ± {_NUM} overfitted, {_NUM} ± {_NUM} generalised; advantage "
              rf"{_NUM} vs {_NUM}; TPR at 1% FPR ~{_NUM} for both",
              rf"overfitted [\d.]+ [\d.]+ {_NUM} ± {_NUM} {_NUM} ± [\d.]+ (?:not measurable )?{_NUM} ± [\d.]+ "
              rf"well generalised [\d.]+ [\d.]+ {_NUM} ± {_NUM} {_NUM} ± [\d.]+ (?:not measurable )?{_NUM} ±", 0.005,
              figures=lambda auc, sd, adv, tpr, auc2, sd2, adv2, tpr2: (auc, sd, auc2, sd2, adv, adv2, tpr)),
    ],
    "07_secure_aggregation.ipynb": [
        Quote(rf"error ~{_NUM} against the float sum",
              rf"largest error vs the float sum: {_NUM} bytes sent per client", 5e-8),
        Quote(rf"{_NUM}x the raw bytes \({_NUM} parameters",
              rf"vs {_NUM} for the raw float32 update \({_NUM}x\)", 0.005, figures=lambda raw, x: (x, raw / 4)),
        Quote(rf"bytes {_NUM}-{_NUM}x with all peers, ~{_NUM}-{_NUM}x with neighbours",
              "".join(rf" {n} all n-1 [\d.]+ [\d.]+ {_NUM}x {n} k = 2 log2 n [\d.]+ [\d.]+ {_NUM}x" for n in (20, 50, 100)),
              0.005, figures=lambda *x: (min(x[::2]), max(x[::2]), min(x[1::2]), max(x[1::2]))),
        Quote(rf"that is a third more than the raw update \({_NUM}x in the table\)",
              rf" 100 all n-1 [\d.]+ [\d.]+ {_NUM}x", 0.005),
        Quote(rf"10 rounds differ from plain FedAvg by ~{_NUM},",
              rf"largest difference from plain FedAvg over 10 rounds: {_NUM}", 5e-9),
        Quote(rf"test accuracy ~{_NUM}\.", rf"test accuracy after 10 secure rounds: {_NUM}", 0.005),
    ],
    "08_differential_privacy.ipynb": [
        *[
            Quote(rf"agree on \$\\varepsilon \\approx {_NUM}\$; PLD and PRV say about \*\*{_NUM}\*\*",
                  rf"fedlab\.dp \(yours, RDP\) {_NUM} .*? dp_accounting PLD {_NUM} Opacus PRV {_NUM} q = 0\.001",
                  0.01, figures=pick)
            for pick in (lambda rdp, pld, prv: (rdp, pld), lambda rdp, pld, prv: (rdp, prv))
        ],
        Quote(rf"fedlab {_NUM} \(best order [\d.]+\), Opacus RDP {_NUM}, dp_accounting RDP {_NUM}, PLD {_NUM}, "
              rf"PRV {_NUM}\.",
              rf"fedlab\.dp \(yours, RDP\) {_NUM} Opacus RDP {_NUM} dp_accounting RDP {_NUM} dp_accounting PLD "
              rf"{_NUM} Opacus PRV {_NUM} q = 0\.001", 0.0005),
        Quote(rf"1000 rounds: fedlab {_NUM} = dp_accounting, Opacus {_NUM} \(its orders stop at 63\), PLD {_NUM}, "
              rf"PRV {_NUM}\.",
              rf"1000 steps, delta = 1e-05 fedlab\.dp \(yours, RDP\) {_NUM} Opacus RDP {_NUM} dp_accounting RDP "
              rf"[\d.]+ dp_accounting PLD {_NUM} Opacus PRV {_NUM}", 0.0005),
        Quote(rf"Even at \$\\varepsilon \\approx {_NUM}\$ the bound allows {_NUM};",
              rf"(?<![\d.])5 {_NUM} [\d.]+ ± [\d.]+ [\d.]+ ± [\d.]+ {_NUM}(?![\d.])", None),
        Quote(rf"AUC {_NUM} without noise, {_NUM} at \$z = 1\$ \(\$\\varepsilon\$ {_NUM}\), {_NUM} at \$z = 1\.5\$ "
              rf"\(\$\\varepsilon\$ {_NUM}\), {_NUM} at \$z = 5\$ \(\$\\varepsilon\$ {_NUM}\), while the accuracy falls "
              rf"{_NUM} → {_NUM} → {_NUM} → {_NUM}\.",
              rf"(?<![\d.])0 inf {_NUM} ± [\d.]+ {_NUM} ± .*?(?<![\d.])1 {_NUM} {_NUM} ± [\d.]+ {_NUM} ± "
              rf".*?(?<![\d.])1\.5 {_NUM} {_NUM} ± [\d.]+ {_NUM} ± .*?(?<![\d.])5 {_NUM} {_NUM} ± [\d.]+ {_NUM} ±", None,
              figures=lambda a0, m0, e1, a1, m1, e15, a15, m15, e5, a5, m5: (m0, m1, e1, m15, e15, m5, e5, a0, a1, a15, a5)),
        Quote(rf"Noise for \$\\varepsilon\$ 1 / 3 / 8 at \$q = 0\.05\$, 100 rounds: {_NUM} / {_NUM} / {_NUM}\.",
              rf"q = 0\.05, 100 rounds: noise multiplier for epsilon 1 / 3 / 8 = {_NUM} / {_NUM} / {_NUM}", 0.005),
    ],
    "09_monitor_debug.ipynb": [
        Quote(rf"test accuracy {_NUM}, median update norm {_NUM}\.",
              rf"clean run: test accuracy {_NUM}; median update norm {_NUM}", 0.005),
        Quote(rf"\(plain mean, 5% dropouts\): {_NUM}, {_NUM} non-finite updates dropped",
              rf"test accuracy {_NUM} \(clean run: [\d.]+\); non-finite updates dropped: {_NUM}", 0.0005),
        Quote(rf"by norm client 12 in {_NUM} rounds \(from round {_NUM}\), 14 in {_NUM} \(from round {_NUM}, "
              rf"the NaN\), and honest client 18 in {_NUM} rounds",
              rf"client 12: {_NUM} rounds \(from round {_NUM}\), client 14: {_NUM} rounds \(from round {_NUM}\), "
              rf"client 18: {_NUM} rounds", 0),
        Quote(rf"by loss client 0 in {_NUM} rounds, client 3 in {_NUM} \(from round {_NUM}, the drift\), client 12 "
              rf"in {_NUM}\.",
              rf"client 0: {_NUM} rounds \(from round \d+\), client 3: {_NUM} rounds \(from round {_NUM}\), "
              rf"client 12: {_NUM} rounds", 0),
        Quote(rf"norm bound M = {_NUM}\)", rf"max_norm M = {_NUM}", 0.005),
        *[
            Quote(rf"{re.escape(quoted)} {_NUM} / {_NUM} / {_NUM} / {_NUM}", _table_row(printed), 0.0005)
            for quoted, printed in (
                ("clean", "clean"),
                ("label flip", "label flip"),
                ("NaN", "NaN update"),
                ("boosted x10", "boosted x10"),
                ("four boosted clients", "boosted x10, 4 clients"),
                ("drift", "drift"),
                ("clean non-IID (Dirichlet 0.1)", "clean, non-IID (Dir 0.1)"),
            )
        ],
        Quote(rf"jumps to {_NUM} at f = {_NUM} \(more than half\)",
              rf"{_NUM} 0\.51 [\d.]+ [\d.]+ ([\d.]+)(?![\d.])", 0.005, figures=lambda f, median: (median, f)),
    ],
    "10_capstone.ipynb": [
        Quote(rf"10% dropouts it is about {_NUM} times \$\\delta\$",
              rf"20 users a round, 10% dropouts: P\[F\] = \S+, refusal term e\^2 P\[F\] = \S+ \({_NUM} x delta\)", 20),
        Quote(rf"5% dropouts\*\*, where it is about {_NUM}% of \$\\delta\$",
              rf"30 users a round, 5% dropouts: P\[F\] = \S+, refusal term e\^2 P\[F\] = \S+ \({_NUM} x delta\)", 0.5,
              figures=lambda times: (100 * times,)),
        Quote(rf"its refusal term \$e\^2 P\[F\] = {_NUM} \\times 10\^{{{_NUM}}}\$ is a hundred times",
              rf"20 users a round, 10% dropouts: P\[F\] = \S+, refusal term e\^2 P\[F\] = {_NUM} ", 0,
              figures=lambda term: tuple(float(p) for p in f"{term:.1e}".split("e"))),
        Quote(rf"\$z = {_NUM}\$ for \$\\varepsilon = 2\$ at total \$\\delta = 10\^{{-5}}\$, refusal term included "
              rf"\(the sampled Gaussian alone: {_NUM}\)",
              rf"z = {_NUM} gives epsilon [\d.]+ at total delta 1e-05 \(the sampled Gaussian alone: {_NUM}\)", 0.0005),
    ],
    "12_personal.ipynb": [
        Quote(rf"global model mean user {_NUM}, 10th-percentile user {_NUM};",
              rf"global model mean user {_NUM} 10th-percentile user {_NUM}", 0.005),
        Quote(rf"fine-tuning k = 30 mean {_NUM},", rf"fine-tuned, k=30 mean user {_NUM}", 0.005),
        Quote(rf"low-activity users \+{_NUM} points", rf"by activity group: low {_NUM} points", 0.5),
        Quote(rf"personal head about {_NUM};", rf"personal head mean user {_NUM}", 0.01),
        Quote(rf"local only about {_NUM}\.", rf"local only mean user {_NUM}", 0.01),
        Quote(rf"gain most \(about {_NUM} points with fine-tuning, against about {_NUM} and {_NUM} for the medium "
              r"and high groups",
              rf"by activity group: low {_NUM} points, medium {_NUM} points, high {_NUM} points", 1.0),
        Quote(rf"costs this model about {_NUM} point on the mean user",
              rf"mean user {_NUM} {_NUM} [-+][\d.]+ [\d.]+", 0.5, figures=lambda plain, private: (100 * (plain - private),)),
        Quote(rf"fine-tuning the DP model gains about {_NUM}\.",
              rf"mean user [\d.]+ {_NUM} [-+][\d.]+ {_NUM}", 1.0, figures=lambda private, tuned: (100 * (tuned - private),)),
        Quote(rf"from about {_NUM} days of their own it wins", r"beats the global one .* from day (\d+)", 0),
    ],
}
"""Per solution notebook, the figures its markdown quotes from its own outputs (lessons 05, 07-10, 12 so far)."""


COMPUTED: dict[str, list[tuple[str, Callable[[], tuple], float | None]]] = {
    "11_flower.ipynb": [
        (
            rf"20 of 1,200 users a round, z = {_NUM}, 200 rounds gives epsilon {_NUM} with the Poisson bound "
            rf"\(lesson 10's setting\), {_NUM} with the fixed-size bound at the same multiplier, and \*\*{_NUM}\*\* "
            rf"once the replace-one sensitivity is counted; a fixed cohort needs z of about {_NUM} for epsilon 2",
            lambda: _flower_dp_figures(),
            None,
        ),
    ],
}
"""Figures a lesson's markdown states but no cell prints (a lesson that cannot afford the cell, or where the
figure is an aside): ``(text regex, recompute, tolerance)``, checked by recomputing them with the library.
A tolerance of ``None`` is each figure's own rounding (half a unit of its last quoted digit)."""


def _rounding(figure: str) -> float:
    """Half a unit of the last digit of a quoted figure: ``"17.0"`` -> 0.05, ``"2.57"`` -> 0.005."""
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    return 0.5 * 10.0**-decimals


def _flower_dp_figures() -> tuple:
    from fedlab import dp

    q, z, rounds, delta = 20 / 1200, 0.982, 200, 1e-5
    fixed = dict(steps=rounds, delta=delta, sampling="fixed_size")
    z_fixed = 2 * dp.noise_multiplier_for(epsilon=2.0, q=q, **fixed)  # Flower's z counts as z / 2 (replace-one)
    return (
        z,
        dp.epsilon(q=q, noise_multiplier=z, steps=rounds, delta=delta),
        dp.epsilon(q=q, noise_multiplier=z, **fixed),
        dp.epsilon(q=q, noise_multiplier=dp.replace_one_noise_multiplier(z), **fixed),
        z_fixed,
    )


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def markdown_text(nb) -> str:
    """Every markdown cell of ``nb``, whitespace collapsed."""
    return _collapse(" ".join(c.source for c in nb.cells if c.cell_type == "markdown"))


def output_text(nb) -> str:
    """Every text output of ``nb``'s code cells (streams and plain-text results), whitespace collapsed."""
    parts = []
    for c in nb.cells:
        for out in c.get("outputs", []) if c.cell_type == "code" else ():
            text = out.get("text") or (out.get("data") or {}).get("text/plain") or ""
            parts.append(text if isinstance(text, str) else "".join(text))
    return _collapse(" ".join(parts))


def _numbers(match) -> list[float]:
    return [float(g.replace(",", "")) for g in match.groups()]


def drift(nb, quotes) -> list[str]:
    """What the markdown of an executed notebook quotes differently from its outputs (empty when nothing drifted)."""
    text, out = markdown_text(nb), output_text(nb)
    problems = []
    for q in quotes:
        said, printed = re.search(q.text, text), re.search(q.output, out)
        if said is None:
            problems.append(f"the markdown no longer says {q.text!r}")
            continue
        if printed is None:
            problems.append(f"no output matches {q.output!r} (the markdown quotes {said.group(0)!r})")
            continue
        quoted, measured = _numbers(said), _numbers(printed)
        if q.figures is not None:
            measured = [float(v) for v in q.figures(*measured)]
        tols = [q.tol if q.tol is not None else _rounding(g) for g in said.groups()]
        if len(quoted) != len(measured) or any(abs(a - b) > t + 1e-9 for a, b, t in zip(quoted, measured, tols)):
            problems.append(
                f"the markdown says {said.group(0)!r} ({quoted}); the outputs say {printed.group(0)!r} "
                f"({[round(m, 4) for m in measured]}, tolerance {q.tol if q.tol is not None else 'their rounding'})"
            )
    return problems


@pytest.mark.parametrize("name", sorted(QUOTES))
def test_every_quote_is_still_in_its_lesson(name):
    text = markdown_text(course.read_notebook(course.SOLUTIONS_DIR / name))
    missing = [q.text for q in QUOTES[name] if not re.search(q.text, text)]
    assert not missing, f"{name}: the markdown no longer quotes {missing} (update QUOTES with the text)"


def test_drift_fails_on_a_figure_the_outputs_no_longer_give():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="clean run: test accuracy 0.905\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("The clean run reaches\naccuracy 0.91."), cell]
    quote = Quote(rf"reaches accuracy {_NUM}\.", rf"test accuracy {_NUM}", 0.005)
    assert drift(nb, [quote]) == []
    cell.outputs[0].text = "clean run: test accuracy 0.760\n"
    assert "0.760" in drift(nb, [quote])[0]
    nb.cells[0].source = "The clean run is good."
    assert "no longer says" in drift(nb, [quote])[0]


@pytest.mark.parametrize("name", sorted(COMPUTED))
def test_figures_no_cell_prints_match_the_library(name):
    text = markdown_text(course.read_notebook(course.SOLUTIONS_DIR / name))
    for pattern, recompute, tol in COMPUTED[name]:
        said = re.search(pattern, text)
        assert said, f"{name}: the markdown no longer says {pattern!r}"
        quoted, now = _numbers(said), [float(v) for v in recompute()]
        tols = [tol if tol is not None else _rounding(g) for g in said.groups()]
        assert all(abs(a - b) <= t + 1e-9 for a, b, t in zip(quoted, now, tols)), (
            f"{name}: the text says {said.group(0)!r} ({quoted}); the library gives {[round(v, 4) for v in now]}"
        )


def test_a_figure_is_held_to_its_own_rounding():
    assert _rounding("17.0") == pytest.approx(0.05) and _rounding("2.57") == pytest.approx(0.005)
    assert _rounding("14") == 0.5
