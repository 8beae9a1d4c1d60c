"""The README's lesson timings come from a measured run (benchmarks/readme_timings.py), not typed."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_timings", ROOT / "benchmarks" / "readme_timings.py")
readme_timings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_timings)


def test_measured_lessons_replace_their_cell_and_others_stay():
    text = (ROOT / "README.md").read_text()
    rows = [line for line in text.splitlines() if readme_timings.ROW.match(line)]
    assert len(rows) >= 12, "the README's lesson table was not found"
    new, used = readme_timings.regenerate(text, {"solutions/02_fedavg.ipynb": 48.3}, day="2026-12-07")
    assert used == {"02_fedavg": 48.3}
    assert "| 02 | `02_fedavg` | 75 min | ~48 s (measured 2026-12-07) |" in new
    assert [a for a, b in zip(text.splitlines(), new.splitlines()) if a != b] == [r for r in rows if "02_fedavg" in r]


def test_a_row_with_a_note_after_its_name_is_regenerated_too():
    text = "| 13 | `13_distributed_dp` (advanced track) | 100 min | ~20-32 s (typed) |\n"
    new, used = readme_timings.regenerate(text, {"solutions/13_distributed_dp.ipynb": 27.4}, day="2026-12-07")
    assert used == {"13_distributed_dp": 27.4}
    assert new == "| 13 | `13_distributed_dp` (advanced track) | 100 min | ~27 s (measured 2026-12-07) |\n"
