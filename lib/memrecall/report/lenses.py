"""What notebook 06 reads: the two-step verdict under each lens, medians and KL by depth.

Layers are shown 1-based (:func:`memrecall.report.to_display_layer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import projection
from ..lenses import LogitLens
from .tables import to_display_layer, two_step_verdict

__all__ = [
    "EFFECT_MARGIN",
    "depth_layer",
    "kl_at_depths",
    "lens_conclusions",
    "lens_fits",
    "lens_medians",
    "lens_verdicts",
]

# Mean |Cliff's delta| of the two steps must move by more than this to "strengthen"/"weaken".
EFFECT_MARGIN = 0.05


def _support(two_step: str) -> int | None:
    """2 supported, 1 partly, 0 not supported, None not tested (:func:`two_step_verdict`)."""
    if two_step.startswith("supported"):
        return 2
    if two_step.startswith("partly"):
        return 1
    return 0 if two_step.startswith("not supported") else None


def _change(base: int | None, other: int | None, base_effect: float, effect: float) -> str:
    if base is None or other is None:
        return "not tested"
    if base == other == 0:
        return "absent under both"
    if other == 0:
        return "vanishes"
    if base == 0:
        return "appears"
    if other != base:
        return "strengthens" if other > base else "weakens"
    if effect > base_effect + EFFECT_MARGIN:
        return "strengthens"
    return "weakens" if effect < base_effect - EFFECT_MARGIN else "survives"


def lens_verdicts(tests: pd.DataFrame, baseline: str = LogitLens.label, a: str = "memorized",
                  b: str = "non-memorized", alpha: float = 0.05,
                  admission: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model and lens: the two-step picture, and what the lens does to it.

    The strength of the picture is the mean of the two effects in its direction (earlier
    promotion: ``-delta`` of the promotion layer; larger boost: ``+delta`` of the confidence
    boost, Cliff's deltas of ``a`` against ``b``). A lens *strengthens* the picture when it
    supports more of it than ``baseline`` (partly -> fully) or, at the same level, when the
    strength grows by more than :data:`EFFECT_MARGIN`; it *weakens* it the other way round; it
    makes it *vanish* when nothing significant is left, or *appear* when ``baseline`` had none.

    Args:
        tests: :func:`memrecall.analysis.group_tests_by_model` rows with a ``lens`` column.
        baseline: the lens the others are compared with.
        a: the group recalled from memory (memorized idioms).
        b: the group it is compared with (non-memorized idioms).
        alpha: significance level.
        admission: :func:`memrecall.analysis.lens_admission` rows; a lens it does not admit
            gets ``change`` "left out: not converged (layers ...)" instead of a comparison.

    Returns:
        One row per (model, lens): ``two_step`` (:func:`two_step_verdict`), the deltas
        ``promotion_delta`` and ``boost_delta``, ``strength`` and ``change`` (one of
        :data:`LENS_CHANGES`; ``baseline`` for the baseline itself).
    """
    left_out = {} if admission is None else {
        (row.model, row.lens): row.failing_layers
        for row in admission.itertuples() if not row.admitted}
    rows = []
    for (model, lens), part in tests.groupby(["model", "lens"], sort=False):
        pair = part[(part["a"] == a) & (part["b"] == b)].set_index("measure")
        deltas = {m: float(pair.loc[m, "rank_biserial"]) if m in pair.index else np.nan
                  for m in ("promotion_layer", "confidence_boost")}
        rows.append({"model": model, "lens": lens,
                     "two_step": two_step_verdict(part, a, b, alpha=alpha),
                     "promotion_delta": deltas["promotion_layer"],
                     "boost_delta": deltas["confidence_boost"],
                     "strength": (deltas["confidence_boost"] - deltas["promotion_layer"]) / 2})
    order = {key: i for i, key in enumerate(dict.fromkeys(tests["model"]))}
    lens_order = {key: i for i, key in enumerate(dict.fromkeys(tests["lens"]))}
    out = pd.DataFrame(rows)
    out = out.iloc[sorted(range(len(out)), key=lambda i: (order[out["model"].iloc[i]],
                                                          lens_order[out["lens"].iloc[i]]))]
    out = out.reset_index(drop=True)
    changes = []
    for row in out.itertuples():
        base = out[(out["model"] == row.model) & (out["lens"] == baseline)]
        if row.lens == baseline:
            changes.append("baseline")
        elif (row.model, row.lens) in left_out:
            changes.append(f"left out: not converged (layers {left_out[row.model, row.lens]})")
        elif base.empty:
            changes.append("not tested")
        else:
            changes.append(_change(_support(base["two_step"].iloc[0]), _support(row.two_step),
                                   float(base["strength"].iloc[0]), float(row.strength)))
    return out.assign(change=changes)


def lens_conclusions(verdicts: pd.DataFrame, baseline: str = LogitLens.label) -> str:
    """One line per model: the picture under ``baseline`` and what each better lens does to it.

    Args:
        verdicts: :func:`lens_verdicts` output.
        baseline: the lens the others were compared with.
    """
    lines = []
    for model, part in verdicts.groupby("model", sort=False):
        base = part[part["lens"] == baseline]
        head = (f"{model}: two-step picture under the {baseline}: "
                f"{base['two_step'].iloc[0] if len(base) else 'not computed'}")
        others = [f"{row.lens}: {row.change} ({row.two_step}"
                  + (f"; Cliff's delta promotion {row.promotion_delta:+.2f}, boost "
                     f"{row.boost_delta:+.2f})" if pd.notna(row.strength) else ")")
                  for row in part[part["lens"] != baseline].itertuples()]
        lines.append("\n    ".join([head, *others]))
    return "\n".join(lines)


def lens_medians(tables: Mapping[str, Mapping[str, pd.DataFrame]]) -> pd.DataFrame:
    """Median promotion layer (1-based) per group, for every model and lens.

    Args:
        tables: lens -> model -> :func:`memrecall.analysis.per_example_table` output.

    Returns:
        One row per (model, lens) (a MultiIndex), one column per group.
    """
    rows = {}
    models = dict.fromkeys(model for by_model in tables.values() for model in by_model)
    for model in models:
        for lens, by_model in tables.items():
            medians = projection.group_medians(by_model[model], measures=("promotion_layer",))
            rows[(model, lens)] = to_display_layer(medians["median_promotion_layer"])
    out = pd.DataFrame(rows).T
    out = out[projection.group_order(out.columns)]
    out.index.names = ["model", "lens"]
    out.columns.name = "median promotion layer (1-based)"
    return out


def depth_layer(depth: float, n_layers: int) -> int:
    """The layer (1-based) shown for a relative ``depth``: ``round(depth * n_layers)``, >= 1."""
    return max(1, round(depth * n_layers))


def kl_at_depths(kl: pd.DataFrame, depths: Sequence[float] = (0.25, 0.5, 0.75)) -> pd.DataFrame:
    """Held-out KL (bits) of each lens at a few relative depths, layers named 1-based.

    Args:
        kl: :func:`memrecall.lenses.held_out_kl` rows with a ``model`` column.
        depths: fractions of the depth; each is shown at layer ``round(depth * n_layers)``.

    Returns:
        One row per (model, lens), one column per depth (``"layer 5/18"``).
    """
    frames = []
    for model, part in kl.groupby("model", sort=False):
        n_layers = int(part["layer"].max()) + 1
        shown = {depth_layer(depth, n_layers): depth for depth in depths}
        wide = part.pivot(index="lens", columns="layer", values="kl_bits")
        wide = wide.reindex(list(dict.fromkeys(part["lens"])))
        table = pd.DataFrame({f"layer {layer}/{n_layers}": wide[layer - 1] for layer in shown})
        frames.append(table.assign(model=model).set_index("model", append=True)
                      .reorder_levels(["model", "lens"]))
    out = pd.concat(frames)
    out.columns.name = "held-out KL (bits)"
    return out


def lens_fits(readers: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """How each fitted lens was fitted: model, lens, tokens, seconds, hyperparameters.

    Args:
        readers: model -> lens name -> lens (the logit lens, which has no fit, is skipped).
    """
    rows = []
    for model, by_name in readers.items():
        for name, lens in by_name.items():
            meta = getattr(lens, "meta", None)
            if meta is None:
                continue
            rows.append({"model": model, "lens": name, "tokens": meta["data"]["n_tokens"],
                         "text": meta["data"]["source"], "seconds": meta["fit_seconds"],
                         "hyperparameters": ", ".join(
                             f"{k}={v}" for k, v in meta["hyperparameters"].items())})
    return pd.DataFrame(rows, columns=["model", "lens", "tokens", "text", "seconds",
                                       "hyperparameters"])
