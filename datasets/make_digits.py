r"""Write ``datasets/digits.csv`` from scikit-learn's bundled copy of the UCI digits.

Run from the repository root (offline: scikit-learn reads its own package files)::

    python datasets/make_digits.py

The output is plain CSV with ``\\n`` line ends: a header ``pixel_0_0, ...,
pixel_7_7, label`` and one line per image of 64 integers in 0..16 and a label
in 0..9, in scikit-learn's order. The bytes depend only on the data, so the
sha256 in ``datasets/digits.md`` and ``fedlab/data.py`` pins them.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def digits_csv() -> str:
    """The CSV text of scikit-learn's digits: header, then 1797 lines of 64 pixels and a label."""
    bunch = load_digits()
    pixels = bunch.data.astype(np.int64)
    labels = bunch.target.astype(np.int64)
    header = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)] + ["label"]
    lines = [",".join(header)]
    lines += [",".join(map(str, [*row, label])) for row, label in zip(pixels.tolist(), labels.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "digits.csv"
    out.write_bytes(digits_csv().encode("ascii"))
    print(f"wrote {out}")
