"""Which fitted lenses may enter notebook 06's verdicts: a convergence rule stated in advance.

A fitted lens is only worth believing where it reads the layers at least as well as what it
claims to improve on. The rule reads nothing but the held-out KL table (``lens_kl.csv``: mean
and standard error per lens and layer), so anyone can check it: at every layer but the last
(where every lens is the model's output), a lens's held-out KL must be at or below each
reference's, within :data:`TOLERANCE_SE` standard errors of their difference
(``sqrt(se_lens^2 + se_reference^2)``, the measurement uncertainty of the two means):

* every fitted lens against the logit lens;
* the tuned lens also against the linear shortcut (it starts from it and is trained on the very
  KL it is judged by, so reading worse means it did not converge).

A lens failing at any layer is left out of the verdicts, and the failing layers are named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["ADMISSION_COLUMNS", "REFERENCES", "TOLERANCE_SE", "layer_runs", "lens_admission"]

TOLERANCE_SE = 2.0
REFERENCES: Mapping[str, Sequence[str]] = {
    "linear shortcut": ("logit lens",),
    "tuned lens": ("logit lens", "linear shortcut"),
}
"""Lens label -> the readings it must match or beat at every layer."""

ADMISSION_COLUMNS = ["model", "lens", "admitted", "failing_layers", "worst_excess_bits", "rule"]


def lens_admission(kl: pd.DataFrame, references: Mapping[str, Sequence[str]] = REFERENCES,
                   tolerance_se: float = TOLERANCE_SE) -> pd.DataFrame:
    """Apply the convergence rule to every model's fitted lenses.

    Args:
        kl: :func:`memrecall.lenses.held_out_kl` rows with a ``model`` column (``layer``
            0-based; the last layer of each model is not judged).
        references: lens -> the readings it is held to (default :data:`REFERENCES`).
        tolerance_se: how many standard errors of the difference are forgiven.

    Returns:
        :data:`ADMISSION_COLUMNS`, one row per (model, judged lens): ``admitted``,
        ``failing_layers`` (1-based runs per reference, e.g. ``"1-16 (linear shortcut)"``;
        empty when admitted),
        ``worst_excess_bits`` (largest ``diff - tolerance * se`` over the judged layers: at or
        below 0 when admitted), ``rule`` (the rule in words).

    Raises:
        ValueError: a lens the rule needs is missing.
    """
    rows = []
    for model, part in kl.groupby("model", sort=False):
        judged = part[part["layer"] < part["layer"].max()]
        by_lens = {lens: frame.set_index("layer").sort_index()
                   for lens, frame in judged.groupby("lens", sort=False)}
        for lens, refs in references.items():
            failing, worst = [], -np.inf
            for name in (lens, *refs):
                if name not in by_lens:
                    raise ValueError(f"{model}: no held-out KL of {name!r}; measure every "
                                     f"lens of {[lens, *refs]} on the same text")
            for reference in refs:
                mine, theirs = by_lens[lens], by_lens[reference]
                excess = (mine["kl_bits"] - theirs["kl_bits"]
                          - tolerance_se * np.hypot(mine["se_bits"], theirs["se_bits"]))
                worst = max(worst, float(excess.max()))
                bad = [int(layer) + 1 for layer in excess.index[excess > 0]]
                if bad:
                    failing.append(f"{layer_runs(bad)} ({reference})")
            rows.append({"model": model, "lens": lens, "admitted": not failing,
                         "failing_layers": ", ".join(failing), "worst_excess_bits": worst,
                         "rule": f"held-out KL <= {' and '.join(refs)} + {tolerance_se:g} SE "
                                 "at every layer but the last"})
    return pd.DataFrame(rows, columns=ADMISSION_COLUMNS)


def layer_runs(layers: Sequence[int]) -> str:
    """Sorted layer numbers as runs: ``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"``."""
    runs: list[list[int]] = []
    for layer in sorted(layers):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
