"""Shared by the widget benchmarks (leakage explorer, DP frontier, budget planner): seeded control moves,
timed kernel-side around ``control.value = new``, and their summary.

Imported as a sibling module by the scripts in this folder (``python benchmarks/<name>.py`` puts the
folder on ``sys.path``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def neighbour(widget, gen: np.random.Generator):
    """A value one step away from the widget's current one (IntSlider, SelectionSlider, ToggleButtons)."""
    if hasattr(widget, "options"):
        values = [v for _, v in widget.options] if isinstance(widget.options[0], tuple) else list(widget.options)
        i = values.index(widget.value)
        steps = [j for j in (i - 1, i + 1) if 0 <= j < len(values)]
        return values[int(gen.choice(steps))]
    steps = [v for v in (widget.value - 1, widget.value + 1) if widget.min <= v <= widget.max]
    return int(gen.choice(steps))


def every_control_then_random(names: list[str], moves: int, gen: np.random.Generator) -> list[str]:
    """Every control once plus random ones up to ``moves``, in a seeded random order."""
    order = names + [names[int(i)] for i in gen.integers(0, len(names), size=max(0, moves - len(names)))]
    return [order[int(i)] for i in gen.permutation(len(order))]


def replay(
    controls: dict,
    order: list[str],
    gen: np.random.Generator,
    *,
    cache_size: Callable[[], int] | None = None,
    will_compute: Callable[[str, object], bool] | None = None,
) -> tuple[list[float], list[bool], dict[str, list[float]]]:
    """Move ``controls[name]`` to a neighbouring value for each name in ``order``; time each move.

    A move counts as fresh (computed, not served from a cache) if ``cache_size()`` grew during it, or
    if ``will_compute(name, new)`` said so before it (give one of the two).
    Returns the seconds of each move, whether it was fresh, and the seconds per control.
    """
    times, fresh, per_control = [], [], {n: [] for n in controls}
    for name in order:
        w = controls[name]
        new = neighbour(w, gen)
        before = cache_size() if cache_size is not None else None
        predicted = will_compute(name, new) if will_compute is not None else None
        t = time.perf_counter()
        w.value = new
        dt = time.perf_counter() - t
        times.append(dt)
        fresh.append(cache_size() > before if cache_size is not None else bool(predicted))
        per_control[name].append(dt)
    return times, fresh, per_control


def summary(
    benchmark: str, seed: int, times: list[float], fresh: list[bool], per_control: dict[str, list[float]]
) -> dict:
    """The common fields of a widget benchmark's JSON line."""
    times_a = np.array(times)
    fresh_a = times_a[np.array(fresh, dtype=bool)]
    return {
        "benchmark": benchmark,
        "moves": len(times),
        "seed": seed,
        "median_move_s": round(float(np.median(times_a)), 4),
        "p95_move_s": round(float(np.percentile(times_a, 95)), 4),
        "max_move_s": round(float(times_a.max()), 4),
        "fresh_moves": int(fresh_a.size),
        "median_fresh_move_s": round(float(np.median(fresh_a)), 4) if fresh_a.size else None,
        "p95_fresh_move_s": round(float(np.percentile(fresh_a, 95)), 4) if fresh_a.size else None,
        "median_by_control_s": {n: round(statistics.median(v), 4) for n, v in per_control.items() if v},
    }


def headline(result: dict, *, fresh_label: str, tail: str) -> str:
    """One human line: median, p95, max and how many moves were fresh."""
    n, k = result["moves"], result["fresh_moves"]
    return (
        f"{n} moves: median {result['median_move_s'] * 1e3:.0f} ms, p95 {result['p95_move_s'] * 1e3:.0f} ms, "
        f"max {result['max_move_s'] * 1e3:.0f} ms ({k} {fresh_label}, {n - k} from the cache); {tail}"
    )
