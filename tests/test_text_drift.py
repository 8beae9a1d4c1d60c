"""No drift between a lesson's text and its numbers (issue 18, point 5).

Three checks:

- student copies never point at content that only the solutions hold ("our list", "the solution below");
- every figure a lesson's markdown quotes from its own run is read back from the executed outputs: :data:`QUOTES`
  pairs a phrase of the markdown (a regular expression whose groups are the quoted numbers) with the output line
  it comes from (groups: the printed numbers). :func:`drift` compares them within the quote's rounding;
  ``tests/test_notebooks.py`` calls it on every solution notebook it executes, so a change that moves a number
  fails there, and :func:`test_every_quote_is_still_in_its_lesson` (no execution) fails when the text is
  reworded without its quote. Figures no cell prints are recomputed with the library (:data:`COMPUTED`);
  the benchmarks' multi-seed means are not listed.
- every wall time a lesson types with digits is supported by a measured run within :data:`TIME_FACTOR`
  (:data:`TIMINGS`: the notebook's own wall time in the run that executed it, a time it prints, or a
  measurement recorded in the repository), or is not a run time (:data:`NOT_RUN_TIMES`); anything else is said in
  words. The README's lesson timings come from ``benchmarks/readme_timings.py``.
"""

from __future__ import annotations

import html
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
        Quote(rf"accuracy {_NUM} \(always 'good night' {_NUM}\); groups low / medium / high {_NUM} / {_NUM} / {_NUM}; "
              rf"about {_NUM} bytes of raw days per user",
              rf"centralized baseline in [\d.]+ s: accuracy {_NUM} \(always 'good night': {_NUM}\); per group low {_NUM}, "
              rf"medium {_NUM}, high {_NUM} each user uploaded about {_NUM} bytes of raw days", None),
        Quote(rf"{_NUM} users sampled and {_NUM} in the sum a round, no refused round",
              rf"users a round: {_NUM} sampled, {_NUM} in the sum; refused rounds: 0(?![\d.])", None),
        Quote(rf"accuracy {_NUM}, groups {_NUM} / {_NUM} / {_NUM};",
              rf"test accuracy, all users [\d.]+ {_NUM} activity group 'low' [\d.]+ {_NUM} activity group 'medium' [\d.]+ "
              rf"{_NUM} activity group 'high' [\d.]+ {_NUM}", None),
        Quote(rf"baseline AUC {_NUM}, TPR {_NUM} % at 0\.1 % FPR and {_NUM} % at 1 % FPR; capstone AUC {_NUM}, {_NUM} % and "
              rf"{_NUM} %, against the DP bound {_NUM} % and {_NUM} %",
              rf"centralized, no DP \(lesson 01\) {_NUM} {_NUM}% {_NUM}% capstone, epsilon [\d.]+ {_NUM} {_NUM}% {_NUM}% "
              rf"DP bound e\^eps FPR \+ delta <= {_NUM}% <= {_NUM}%", None),
        Quote(rf"{_NUM} bytes per user on average \(busiest user {_NUM}\)", rf"{_NUM} bytes per user \(busiest user: {_NUM}\)",
              None),
        Quote(rf"\(16 bits, {_NUM} of {_NUM} users\): largest difference {_NUM}\.",
              rf"included {_NUM} of {_NUM} .*? largest difference from dp\.dp_aggregate: {_NUM}", 5e-7),
        Quote(rf"mean absolute error in points, {_NUM} users; trained / all-zero model;[^)]*\): plain update {_NUM} / {_NUM}, "
              rf"secure-aggregation sum {_NUM} / {_NUM}, released average {_NUM} / {_NUM}, guessing {_NUM}\. Feature "
              rf"profile: analytic attack {_NUM} / {_NUM} against {_NUM} for the population average",
              rf"share of poor nights of {_NUM} users: .*? plain update {_NUM} {_NUM} server view \(secagg sum\) {_NUM} "
              rf"{_NUM} released \(noisy\) average {_NUM} {_NUM} guess: everyone's rate {_NUM} [\d.]+ feature profile .*? "
              rf"on a plain update {_NUM} \(trained model\), {_NUM} \(all-zero model\); guessing the population "
              rf"average {_NUM}", None),
        Quote(rf"a plain update helps the label attack only a little \(about {_NUM} points of error, against about {_NUM} "
              rf"for guessing",
              rf"plain update {_NUM} [\d.]+ .*? guess: everyone's rate {_NUM}", 1.0),
        Quote(rf"\$\\varepsilon \\le 1\$ within 5 kB: {_NUM} \({_NUM} users, \$z = {_NUM}\$, {_NUM} bits, {_NUM} rounds\)",
              rf"epsilon <= 1 bytes <= 5,000: accuracy {_NUM} \(qN {_NUM}, z {_NUM}, {_NUM} bits, {_NUM} rounds\)", None),
        Quote(rf"\$\\varepsilon \\le 4\$ within 20 kB: {_NUM};", rf"epsilon <= 4 bytes <= 20,000: accuracy {_NUM}", None),
    ],
    "06_remote_data.ipynb": [
        Quote(rf"This lesson uses \*\*PySyft {_NUM}\*\*", rf"syft {_NUM}\.\d+ imported in", 0),
        Quote(rf"Test accuracy goes from {_NUM} \(random start\) to {_NUM} after one round and {_NUM} after three, "
              rf"against {_NUM} for",
              rf"start {_NUM} (?<![\d.])0 [\d.]+ {_NUM} [\d.]+ a: .*? (?<![\d.])2 [\d.]+ {_NUM} [\d.]+ a: .*? always "
              rf"predicting a good night scores {_NUM}", None),
    ],
    "11_flower.ipynb": [
        Quote(rf"Flower {_NUM} is installed beside PySyft {_NUM} \(lesson 06\)",
              rf"flwr {_NUM}\.\d+ - in the course environment, beside syft {_NUM}\.\d+", 0),
    ],
    "13_distributed_dp.ipynb": [
        Quote(rf"largest coordinate drops from {_NUM} to {_NUM} after rotation",
              rf"before: largest coordinate {_NUM} of norm [\d.]+ after : largest coordinate {_NUM} of norm", None),
        Quote(rf"2,000 conditional roundings: largest bias {_NUM}, largest norm {_NUM} under the bound {_NUM}\.",
              rf"scaled norm [\d.]+; bound {_NUM} .*? largest \|mean of 2,000 roundings - y\|: {_NUM} \(unbiased\) "
              rf"largest rounded norm: {_NUM} <= bound", None, figures=lambda bound, bias, norm: (bias, norm, bound)),
        Quote(rf"The 30-phone round \({_NUM} bits, scale {_NUM}, \$\\mu\$ = {_NUM}\): noise on the decoded sum std {_NUM} over "
              rf"300 rounds against the planned {_NUM}; {_NUM} wrapped coordinates of {_NUM}\.",
              rf"plan: {_NUM} bits, scale {_NUM}, each phone's noise variance {_NUM}, .*? noise on the decoded sum over 300 "
              rf"rounds: std {_NUM}; planned z S sqrt\(30 / 23\) = {_NUM} .*? wrap-around: {_NUM} of {_NUM} coordinates",
              None),
        Quote(rf"\$z\$ = {_NUM} central, {_NUM} distributed for \$\\varepsilon = 2\$; epsilon with 45 / 24 / 16 / 8 "
              rf"survivors {_NUM} / {_NUM} / {_NUM} / {_NUM}\.",
              rf"noise multiplier for epsilon 2 over 200 rounds: central {_NUM}, distributed {_NUM} "
              + "".join(rf".*?(?<![\d.]){n} survivors: epsilon {_NUM}" for n in (45, 24, 16, 8)), None),
        Quote(rf"central \$z\$ = {_NUM}, accuracy {_NUM}; distributed \$z\$ = {_NUM}, ring sized for {_NUM} phones "
              rf"\(`capstone\.cohort_cap`\), `min_survivors` {_NUM} \(`capstone\.min_survivors_for`\), accuracy {_NUM}; "
              rf"{_NUM} vs {_NUM} protocol bytes per phone a round \(masked vector {_NUM} vs {_NUM} bytes\); no wrapped "
              rf"coordinate, no refused round",
              rf"central: z = {_NUM}, .*? distributed: z = {_NUM}, .*? ring sized for {_NUM} phones, min_survivors {_NUM}, "
              rf".*? test accuracy {_NUM} {_NUM} .*? masked vector per phone \(bytes\) {_NUM} {_NUM} all protocol bytes "
              rf"per phone a round {_NUM} {_NUM} wrap-around rate \(coordinates\) - \(fixed point, no wrap\) 0\.0e\+00 "
              rf"refused rounds 0 0 ", None,
              figures=lambda zc, zd, cap, m, ac, ad, vc, vd, bc, bd: (zc, ac, zd, cap, m, ad, bc, bd, vc, vd)),
        Quote(rf"for 1 / 10 / 50 releases the RDP bound gives {_NUM} / {_NUM} / {_NUM} against the exact {_NUM} / {_NUM} / "
              rf"{_NUM} \(the Gaussian's: {_NUM} / {_NUM} / {_NUM}\)",
              rf"(?<![\d.])1 \| {_NUM} \| {_NUM} \| {_NUM} 10 \| {_NUM} \| {_NUM} \| {_NUM} 50 \| {_NUM} \| {_NUM} \| {_NUM}",
              None, figures=lambda o1, e1, g1, o10, e10, g10, o50, e50, g50: (o1, o10, o50, e1, e10, e50, g1, g10, g50)),
        Quote(rf"the lie splits \{{{_NUM}, {_NUM}, {_NUM}, {_NUM}\}} / \{{{_NUM}, {_NUM}, {_NUM}, {_NUM}\}}; phone {_NUM} is asked "
              rf"twice",
              rf"told 'phone 2 dropped': \[{_NUM}, {_NUM}, {_NUM}, {_NUM}\]; told 'phone 2 survived': \[{_NUM}, {_NUM}, "
              rf"{_NUM}, {_NUM}\]; asked twice: \[{_NUM}\]", 0),
        Quote(rf"the consistency round costs a phone {_NUM} bytes up and {_NUM} down",
              rf"the consistency round costs each phone {_NUM} bytes up .*?, {_NUM} bytes down", 0),
        Quote(rf"the real phone keeps {_NUM} % of the planned variance \(\$z\$ {_NUM} → {_NUM}\), epsilon {_NUM} →",
              rf"the real phone keeps only its own noise share, {_NUM}% of the planned variance noise multiplier {_NUM} -> "
              rf"{_NUM}; epsilon {_NUM} ->", None),
        Quote(rf"epsilon [\d.]+ → about {_NUM} with no sampling", rf"; epsilon [\d.]+ -> {_NUM} \(no amplification", 100),
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
"""Per solution notebook, the figures its markdown quotes from its own outputs (lessons 05-12)."""


COMPUTED: dict[str, list[tuple[str, Callable[[], tuple], float | None]]] = {
    "10_capstone.ipynb": [
        (rf"\$\\varepsilon \\le 1\$ first fits at {_NUM} bytes", lambda: (_planner_figures()[0],), 1.0),
        (rf"at [\d,]+ bytes \({_NUM}: {_NUM} users, \$z = {_NUM}\$, {_NUM} bits, {_NUM} rounds\)",
         lambda: _planner_figures()[1:6], None),
        (rf"nothing fits under {_NUM} bytes per user", lambda: (_planner_figures()[6],), None),
        (rf"searches {_NUM} precomputed runs of this same pipeline \({_NUM} seeds; {_NUM}, {_NUM} or {_NUM} users a round; "
         rf"six noise multipliers; {_NUM}, {_NUM}, {_NUM} or {_NUM}-bit secure aggregation; measured after {_NUM} to "
         rf"{_NUM} rounds", lambda: _planner_grid_figures(), 0),
        (rf"at 8 bits and 20 phones, steps of \$1/{_NUM}\$", lambda: (_capstone_grid_step(),), 0),
    ],
    "11_flower.ipynb": [
        (rf"the logistic regression of lesson 02 \({_NUM} parameters\)", lambda: (_flower_logreg_size(),), 0),
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


def _planner_figures() -> tuple:
    """Lesson 10's planner: the fewest bytes at which epsilon <= 1 fits, the plan there, and the fewest at all."""
    from fedlab.widgets.planner import PlannerModel

    m = PlannerModel()
    fewest = float(m.bytes[m.epsilon <= 1].min())
    p = m.plan(1.0, fewest)
    return fewest, p.accuracy, p.clients_per_round, p.noise_multiplier, p.bits, p.rounds, float(m.bytes.min())


def _planner_grid_figures() -> tuple:
    from fedlab.widgets.planner import load_grid

    c = load_grid().config
    runs = len(c["seeds"]) * len(c["clients_per_round"]) * len(c["noise_multiplier"]) * len(c["bits"])
    assert len(c["noise_multiplier"]) == 6, "the text says six noise multipliers"
    return (runs, len(c["seeds"]), *c["clients_per_round"], *c["bits"], min(c["rounds"]), max(c["rounds"]))


def _capstone_grid_step() -> int:
    """The fixed-point step of lesson 10's ring at 8 bits and 20 phones, clipped to S = 0.5: 1 / 2^frac_bits."""
    from fedlab import secagg

    return 2 ** secagg.Config(num_clients=20, threshold=11, dim=1, clip=0.5, bits=8).frac_bits


def _flower_logreg_size() -> int:
    from fedlab import models, params
    from fedlab.flower import core

    return params.num_params(models.init_params(core.model_spec("logreg"), rng=0))


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
    """Every text output of ``nb``'s code cells (streams, plain-text results and the text of HTML results),
    whitespace collapsed."""
    parts = []
    for c in nb.cells:
        for out in c.get("outputs", []) if c.cell_type == "code" else ():
            text = out.get("text") or (out.get("data") or {}).get("text/plain") or ""
            parts.append(text if isinstance(text, str) else "".join(text))
            rich = (out.get("data") or {}).get("text/html")  # a table the lesson displays (lesson 10's report)
            if rich:
                parts.append(html.unescape(re.sub(r"<[^>]+>", " ", rich if isinstance(rich, str) else "".join(rich))))
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


# ---- wall times: every typed run time is supported by a measured run -------------------------------------

TIME_FACTOR = 4.0
"""How far a measured wall time may be from the quoted one, either way: a busy 2-core machine is 2-4x slower than
a quiet one, and a learner's laptop may be faster."""


@dataclass(frozen=True)
class Timing:
    """A wall time a lesson's markdown states with digits, and the measured run that supports it.

    Attributes
    ----------
    text
        Regular expression on the lesson's markdown (whitespace collapsed); its groups are the quoted figure, or
        the two ends of a quoted range.
    source
        ``"run"``: the notebook's own wall time, measured by ``tests/test_notebooks.py`` as it executes it;
        ``"output"``: a time the lesson prints in that same run; a file of the repository (``"README.md"``, a
        datasheet): a measured run recorded there (a benchmark's row, the time a precomputation took).
    measured
        For ``"output"`` and files: a regular expression whose groups are the measured times.
    unit
        Seconds per quoted unit (``1e-3`` for ms, 60 for minutes); measured times are in seconds unless
        ``measured_unit`` says otherwise.
    under
        The text says "under N": any time up to N holds.
    figures
        Maps the measured groups to the times to compare (default: each of them).
    """

    text: str
    source: str
    measured: str = ""
    unit: float = 1.0
    measured_unit: float = 1.0
    under: bool = False
    figures: Callable[..., tuple] | None = None


def _run(text: str) -> Timing:
    return Timing(text, "run")


def _printed(text: str, measured: str, **kw) -> Timing:
    return Timing(text, "output", measured, **kw)


TIMINGS: dict[str, list[Timing]] = {
    "01_centralized.ipynb": [
        _run(rf"Running every cell takes {_NUM}-{_NUM} seconds on a laptop CPU"),
        _run(rf"the notebook runs in about {_NUM} s\)"),
    ],
    "03_real_world.ipynb": [_run(rf"the notebook runs in about {_NUM} s when the machine is quiet and under {_NUM} s")],
    "04_bandwidth.ipynb": [_run(rf"the notebook runs in about {_NUM} s when the machine is quiet .*? under {_NUM} s")],
    "05_leakage.ipynb": [_run(rf"the whole notebook runs in about {_NUM} s under nbclient")],
    "06_remote_data.ipynb": [
        _printed(rf"importing syft {_NUM}-{_NUM} s;", rf"syft \S+ imported in {_NUM} s"),
        _printed(rf"pairing an owner and the scientist {_NUM}-{_NUM} s;", rf"pairing {_NUM} s,"),
        _printed(rf"creating and syncing a dataset under {_NUM} s;", rf"dataset created and synced {_NUM} s", under=True),
        _printed(rf"a job round trip \(submit, approve, run, release, read\) {_NUM}-{_NUM} s",
                 rf"two jobs submitted in {_NUM} s .*? the owner ran the approved job in {_NUM} s",
                 figures=lambda submit, run: (submit + run,)),
        _printed(rf"one FedAvg round over the three hospitals {_NUM}-{_NUM} s on a quiet machine, {_NUM}-{_NUM} s on a busy one",
                 "".join(rf".*?(?<![\d.]){r} [\d.]+ [\d.]+ {_NUM} a: " for r in range(3))),
        _run(rf"The whole notebook takes {_NUM}-{_NUM} s \(quiet to busy machine\)\."),
    ],
    "07_secure_aggregation.ipynb": [
        _run(rf"the whole notebook runs in about {_NUM}-{_NUM} s under nbclient"),
        *[
            _printed(text, rf"(?<![\d.]){n} all n-1 {_NUM} ", unit=1e-3, measured_unit=1e-3)
            for n, text in (
                (20, rf"full masking ~{_NUM}-{_NUM}, ~"),
                (50, rf"full masking ~[\d.]+-[\d.]+, ~{_NUM}-{_NUM} and"),
                (100, rf"~{_NUM}-{_NUM} ms per client for 20, 50 and 100 clients"),
            )
        ],
        _printed(rf"the neighbour graph ~{_NUM}-{_NUM} ms throughout",
                 "".join(rf".*?(?<![\d.]){n} k = 2 log2 n {_NUM} " for n in (20, 50, 100)), unit=1e-3,
                 measured_unit=1e-3),
        Timing(rf"gives ~{_NUM}-{_NUM} ms per client with k = 14", "README.md",
               rf"secagg\.py` \|.*?\| {_NUM} ms masking per client \(k=14", unit=1e-3, measured_unit=1e-3),
        Timing(rf"~{_NUM}-{_NUM} ms with all 99", "README.md",
               rf"secagg\.py` \|.*?, {_NUM} ms with all 99 peers", unit=1e-3, measured_unit=1e-3),
        Timing(rf"the server ~{_NUM} s \(k = 14\)", "README.md", rf"secagg\.py` \|.*?, server unmask {_NUM} s"),
    ],
    "08_differential_privacy.ipynb": [
        Timing(rf"It took 576 trainings \(about {_NUM} minutes\)", "datasets/dp_frontier.md",
               rf"make_dp_frontier\.py .*?\(measured: {_NUM} s", unit=60),
        _run(rf"the notebook runs in {_NUM}-{_NUM} s under nbclient"),
        Timing(rf"median {_NUM}-{_NUM} s, 95th percentile", "README.md",
               rf"dp_frontier\.py` \|.*?\| median {_NUM} s, p95 [\d.]+ s \({_NUM} /"),
        Timing(rf"95th percentile {_NUM}-{_NUM} s \(quiet to busy machine\)", "README.md",
               rf"dp_frontier\.py` \|.*?\| median [\d.]+ s, p95 {_NUM} s \([\d.]+ / {_NUM} s"),
    ],
    "09_monitor_debug.ipynb": [
        _run(rf"the notebook runs in about {_NUM}-{_NUM} s \("),
        _printed(rf"\(about {_NUM} s of it the 28 runs of the robustness table\)",
                 rf"(?<![\d.])24 runs in {_NUM} s; max_norm"),  # the table's 24 of the 28 (4 non-IID runs follow)
    ],
    "10_capstone.ipynb": [
        _run(rf"the notebook runs in {_NUM}-{_NUM} s \(nbclient"),
        _printed(rf"{_NUM} s for 200 rounds with the real protocol", rf"200 rounds with the real protocol in {_NUM} s"),
        _printed(rf"the real protocol \({_NUM} ms a round\)", rf"with the real protocol in [\d.]+ s \({_NUM} ms a round\)",
                 unit=1e-3, measured_unit=1e-3),
        Timing(rf"The grid took {_NUM} s to make on one core", "datasets/capstone_planner.md",
               rf"make_capstone_planner\.py .*?\(measured: {_NUM} s"),
    ],
    "12_personal.ipynb": [
        _run(rf"Running every cell takes {_NUM}-{_NUM} seconds on a 2-core laptop CPU"),
        _run(rf"shared 2-core machine: {_NUM}-{_NUM} s quiet, {_NUM}-{_NUM} s busy\)"),
        _run(rf"the notebook runs in {_NUM}-{_NUM} s \(quiet to busy\)"),
        Timing(rf"the widget's first move to a new k takes about {_NUM} s", "README.md",
               rf"personal_explorer\.py` \|.*?\({_NUM} s for a new k\)"),
        Timing(rf"later moves {_NUM} s\.", "README.md", rf"personal_explorer\.py` \|.*?\| median {_NUM} s,"),
    ],
    "13_distributed_dp.ipynb": [
        _run(rf"Running every cell takes about {_NUM} seconds on a 2-core laptop CPU \(measured with nbclient on a "
             rf"shared 2-core machine: {_NUM}-{_NUM} s; {_NUM} s once on a busy machine\)"),
        _run(rf"the notebook runs in {_NUM}-{_NUM} s with nbclient \({_NUM} s once when the machine was busy; {_NUM} s "
             rf"of \"run all\" in JupyterLab"),
        _printed(rf"the two 200-round runs of section 4 take {_NUM}-{_NUM} s each",
                 rf": z = [\d.]+, 200 rounds in {_NUM} s .*?: z = [\d.]+, 200 rounds in {_NUM} s"),
        _printed(rf"the three-round check with the real protocol {_NUM}-{_NUM} s\.",
                 rf"with its plain equivalent: identical models: \S+ \({_NUM} s\)"),
    ],
}
"""Per solution notebook, the wall times its markdown states with digits and the measured run behind each.

The rule (README, "Course build"): a lesson states a time with digits only when a measured run supports it
within a factor of :data:`TIME_FACTOR` either way - the notebook's own wall time, a time the lesson prints, or a
measured run recorded in the repository (a datasheet, the README's benchmark table). Anything else is said as an
order of magnitude in words ("a few seconds", "about a minute")."""


NOT_RUN_TIMES: dict[str, list[tuple[str, str]]] = {
    "*": [(r"about \d+(?:-\d+)? minutes of your working time", "a learner's working time, not a run time")],
    "00_welcome.ipynb": [(r"Plan 15-20 minutes;", "the instructor's plan for the lesson")],
    "01_centralized.ipynb": [
        (r"Timing for a workshop: .*? the discussion 10 min\.", "the instructor's plan for a workshop"),
        (r"half an hour, 1,000 steps and 10 ms\.", "the precision of the data, not a run time"),
    ],
    "04_bandwidth.ipynb": [
        (r"38 KB take about 0\.3 s", "transfer time: 38 KB at 1 Mbit/s, arithmetic"),
        (r"about 5 minutes of upload at 1 Mbit/s", "transfer time: 40 MB at 1 Mbit/s, arithmetic"),
    ],
    "11_flower.ipynb": [(r"The server polls every 0\.1 s", "a setting of the ServerApp, not a run time")],
}
"""Durations in a lesson's markdown that are not run times, each with the reason (``"*"``: every lesson)."""

_DURATION = re.compile(
    r"(?<![\w.$])\d[\d,]*(?:\.\d+)?(?:\s*(?:-|–|to)\s*\d[\d,]*(?:\.\d+)?)?\s*(?:ms|s|sec|seconds?|min|minutes?)(?![\w'])"
)
"""A duration typed with digits: ``15 s``, ``4-6 s``, ``247 ms``, ``10 minutes``."""


def typed_durations(text: str, timings, not_run_times) -> list[str]:
    """The durations in ``text`` (collapsed markdown) that neither a timing nor a not-a-run-time entry covers."""
    covered = [m.span() for pattern in [t.text for t in timings] + [p for p, _ in not_run_times]
               for m in re.finditer(pattern, text)]
    return [text[max(0, m.start() - 40):m.end()] for m in _DURATION.finditer(text)
            if not any(a <= m.start() and m.end() <= b for a, b in covered)]


def _measured(t: Timing, out: str, seconds: float | None) -> list[float] | str | None:
    if t.source == "run":
        return None if seconds is None else [seconds]
    haystack = out if t.source == "output" else _collapse((course.ROOT / t.source).read_text())
    m = re.search(t.measured, haystack)
    if m is None:
        where = "the outputs" if t.source == "output" else t.source
        return f"no measured time in {where} matches {t.measured!r}"
    values = _numbers(m)
    values = [float(v) for v in t.figures(*values)] if t.figures is not None else values
    return [v * t.measured_unit for v in values]


def wall_time_drift(nb, timings, *, seconds: float | None, sources=("run", "output", "file")) -> list[str]:
    """The wall times ``nb``'s markdown states that no measured run supports (within :data:`TIME_FACTOR`).

    ``seconds`` is the notebook's wall time in this run (``None``: not executed; its ``"run"`` timings are
    skipped); ``sources`` picks which timings to compare (``"file"``: every repository file); every timing's
    text is looked for."""
    text, out = markdown_text(nb), output_text(nb)
    problems = []
    for t in timings:
        said = re.search(t.text, text)
        if said is None:
            problems.append(f"the markdown no longer says {t.text!r}")
            continue
        if (t.source if t.source in ("run", "output") else "file") not in sources:
            continue
        measured = _measured(t, out, seconds)
        if measured is None:
            continue
        if isinstance(measured, str):
            problems.append(f"{measured} (the markdown says {said.group(0)!r})")
            continue
        quoted = [v * t.unit for v in _numbers(said)]
        low, high = (0.0 if t.under else min(quoted)), max(quoted)
        wrong = [m for m in measured if not low / TIME_FACTOR <= m <= high * TIME_FACTOR]
        if wrong:
            problems.append(
                f"the markdown says {said.group(0)!r}; the measured run gives {[round(m, 4) for m in wrong]} s "
                f"({t.source}), more than {TIME_FACTOR:g}x away"
            )
    return problems


SOLUTIONS = sorted(course.SOLUTIONS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_typed_wall_time_is_measured_or_not_a_run_time(path):
    text = markdown_text(course.read_notebook(path))
    unchecked = typed_durations(text, TIMINGS.get(path.name, []),
                                NOT_RUN_TIMES["*"] + NOT_RUN_TIMES.get(path.name, []))
    assert not unchecked, (
        f"{path.name} states durations with digits that no measured run supports: {unchecked}. Say them in words "
        "(an order of magnitude), or register them in TIMINGS with the measured run behind them, or, if they are "
        "not run times, in NOT_RUN_TIMES with the reason"
    )


@pytest.mark.parametrize("name", sorted(TIMINGS))
def test_every_timing_is_in_its_lesson_and_recorded_runs_support_it(name):
    nb = course.read_notebook(course.SOLUTIONS_DIR / name)
    assert not wall_time_drift(nb, TIMINGS[name], seconds=None, sources=("file",))


_README_ROW = re.compile(r"^\| \d\d \| `(\w+)`[^|]*\|[^|]*\| ~(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))? s\b", re.MULTILINE)


def test_the_readme_and_each_lesson_state_compatible_run_times():
    rows = {m.group(1) + ".ipynb": [float(g) for g in m.groups()[1:] if g] for m in _README_ROW.finditer(
        (course.ROOT / "README.md").read_text())}
    assert len(rows) >= 12, "the README's lesson table was not found"
    text = {name: markdown_text(course.read_notebook(course.SOLUTIONS_DIR / name)) for name in TIMINGS}
    apart = []
    for name, timings in TIMINGS.items():
        for t in (t for t in timings if t.source == "run" and name in rows):
            quoted = _numbers(re.search(t.text, text[name]))
            readme = rows[name]
            if max(readme) < min(quoted) / TIME_FACTOR or min(readme) > max(quoted) * TIME_FACTOR:
                apart.append(f"{name}: the README says ~{readme} s, the lesson {quoted} s")
    assert not apart, apart


def test_wall_time_drift_refuses_a_time_no_run_supports():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="28 runs in 13.0 s; max_norm M = 0.5\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("It runs in about 15 s (about\n12 s of it the runs)."), cell]
    run = _run(rf"runs in about {_NUM} s")
    printed = _printed(rf"about {_NUM} s of it the runs", rf"runs in {_NUM} s; max_norm")
    assert wall_time_drift(nb, [run, printed], seconds=50.0) == []  # 50 s is a busy machine's 15 s
    assert "[61.0]" in wall_time_drift(nb, [run], seconds=61.0)[0]
    assert wall_time_drift(nb, [run], seconds=3.0)  # and 4x faster than said is drift too
    assert wall_time_drift(nb, [run], seconds=None) == []  # not executed: nothing to compare
    cell.outputs[0].text = "28 runs in 0.5 s; max_norm M = 0.5\n"
    assert "[0.5]" in wall_time_drift(nb, [printed], seconds=None)[0]
    assert typed_durations(markdown_text(nb), [run], []) == ["It runs in about 15 s (about 12 s"]
    assert typed_durations(markdown_text(nb), [run, printed], []) == []
