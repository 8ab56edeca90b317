"""The paper's claims, each a statistic with an interval and a verdict decided by a fixed rule.

One place holds every claim we test (:data:`CLAIMS`): its id, the paper's sentence, the
statistic that measures it, the sign the paper expects and the value of "no effect". The rule
(:func:`claim_verdict`) was written before any data were looked at and is the same for every
claim:

* ``supported``: the statistic lies on the paper's side of "no effect" and its 95% interval
  excludes "no effect";
* ``contradicted``: the opposite side, with an interval that excludes "no effect";
* ``inconclusive``: otherwise (an interval that covers "no effect", or no value).

Rows have exactly :data:`CLAIM_COLUMNS` (``results/<profile>/claims.csv``). ``population`` is
``filtered`` (the idioms that pass the paper's filters, :func:`select_population`) or ``all``
(every idiom, a sensitivity check); ``lens`` is ``logit``, ``shortcut`` or ``tuned`` (a fitted
lens only for claims about intermediate layers, :attr:`Claim.intermediate`).

The statistics are in :mod:`.effects` (effect sizes with intervals) and
:mod:`.knockout_claims`; :mod:`.claim_rows` measures each claim from a model's results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CLAIMS",
    "CLAIM_COLUMNS",
    "LENS_IDS",
    "POPULATIONS",
    "VERDICTS",
    "Claim",
    "claim_row",
    "claim_verdict",
    "claims_frame",
    "find_claim",
    "merge_claims",
    "select_population",
]

CLAIM_COLUMNS = ["claim", "model", "population", "lens", "statistic", "value", "ci_low",
                 "ci_high", "p_value", "n", "verdict"]
VERDICTS = ("supported", "contradicted", "inconclusive")
POPULATIONS = {
    "filtered": "idioms that pass the paper's filters (hard_to_guess)",
    "all": "all IdioMem idioms (sensitivity check)",
}
LENS_IDS = ("logit", "shortcut", "tuned")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how we measure it.

    Attributes:
        id: the claim's id (``claims.csv``'s ``claim``).
        sentence: what the paper says (our words where it only shows a figure).
        statistic: what ``value`` is.
        expected_sign: +1 or -1: the side of ``null`` the paper expects.
        null: the value of "no effect" (0 for a difference, 1 for a ratio).
        intermediate: the claim is about intermediate layers, so it is also tested under the
            fitted lenses.
        note: how the claim is read, where that needs saying.
    """

    id: str
    sentence: str
    statistic: str
    expected_sign: int
    null: float = 0.0
    intermediate: bool = False
    note: str = ""


def _claims(*claims: Claim) -> dict[str, Claim]:
    return {c.id: c for c in claims}


_DELTA = "Cliff's delta (memorized vs {b}; bootstrap 95% interval; Mann-Whitney p)"
CLAIMS: dict[str, Claim] = _claims(
    Claim("promotion_vs_nonmemorized",
          "Memorized predictions are promoted to the top of the distribution in earlier layers "
          "than non-memorized ones (§5.1, Figure 2).",
          _DELTA.format(b="non-memorized idioms") + " of the promotion layer", -1,
          intermediate=True),
    Claim("promotion_vs_wikipedia",
          "Memorized predictions are promoted earlier than predictions on Wikipedia text "
          "(§5.1, Figure 2).",
          _DELTA.format(b="Wikipedia prompts") + " of the promotion layer", -1,
          intermediate=True),
    Claim("boost_vs_nonmemorized",
          "After promotion, upper layers boost the confidence of memorized predictions more "
          "than of non-memorized ones (§5.1, Figure 2).",
          _DELTA.format(b="non-memorized idioms") + " of the confidence boost", +1,
          intermediate=True),
    Claim("boost_vs_wikipedia",
          "After promotion, memorized predictions gain more confidence than predictions on "
          "Wikipedia text (§5.1, Figure 2).",
          _DELTA.format(b="Wikipedia prompts") + " of the confidence boost", +1,
          intermediate=True),
    Claim("first_layer_rank",
          "Memorized predictions start from a worse (higher) rank in the first layer than "
          "non-memorized ones (§5.1; about 1.2-1.9 times in the paper's Figure 2).",
          "ratio of mean first-layer ranks, memorized / non-memorized (bootstrap 95% interval; "
          "Mann-Whitney p)", +1, null=1.0, intermediate=True),
    Claim("frequency",
          "The first-layer rank of a prediction is weakly, negatively correlated with its "
          "word's frequency (Table 4: r = -0.22, -0.18, -0.19, +0.15).",
          "Pearson r, first-layer rank vs wordfreq frequency of the predicted word, idioms + "
          "Wikipedia prompts (Fisher-z 95% interval)", -1,
          note="The paper's p-values with its r imply n of about 1,600-1,900 predictions, "
               "i.e. its idioms (814) plus its Wikipedia prompts, not memorized idioms alone; "
               "we test that population. Three of its four models have r < 0."),
    Claim("classifier_above_chance",
          "Per-layer probabilities tell memorized from non-memorized idioms (Table 5).",
          "ROC AUC of all-layer probabilities minus random features, paired over 10 splits "
          "(corrected resampled t interval)", +1),
    Claim("classifier_intermediate_layers",
          "All layers tell the groups apart better than the last layer alone (Table 5: 84.6 "
          "vs 79.5 for GPT-2 medium).",
          "accuracy (points), all-layer probabilities minus last-layer probability, paired over "
          "10 splits (corrected resampled t interval)", +1),
    Claim("clusters_boost",
          "Every cluster of memorized idioms gains confidence in the upper layers (Figure 5).",
          "% of memorized idioms in k-means clusters whose mean curve gains probability after "
          "its promotion point (bootstrap 95% interval; no effect: half of them)", +1,
          null=50.0,
          note="Rule on a cluster's mean curve: promotion point = first layer from which the "
               "mean rank stays below 1; gain = final probability minus the probability "
               "there. The same rule on the paper's digitized clusters gives 6 of 7 clusters, "
               "80% of its idioms."),
    Claim("knockout_layer1_nondominant",
          "Zeroing all but the 10 dominant sub-updates of layer 1 changes more memorized "
          "predictions than doing so in any other single layer (Figure 3: 99% vs at most 13%).",
          "% changed, layer 1 minus the strongest other single layer (bootstrap over probes, "
          "the strongest layer re-chosen in each resample)", +1),
    Claim("knockout_layer1_dominant",
          "Zeroing the 10 dominant sub-updates of layer 1 changes more memorized predictions "
          "than in any other single layer (Figure 3: 65% vs at most about 21%).",
          "% changed, layer 1 minus the strongest other single layer (bootstrap over probes, "
          "the strongest layer re-chosen in each resample)", +1),
    Claim("knockout_specific",
          "Not tested by the paper: the layer-1 knockout is specific to memorized predictions "
          "(it changes them more than non-memorized ones).",
          "% changed by the layer-1 non-dominant knockout, memorized minus non-memorized "
          "(bootstrap 95% interval; Fisher's exact p)", +1),
    Claim("knockout_falls_early",
          "The effect of non-dominant 3-layer knockouts falls over the first 40% of the depth "
          "(Figure 7: 72% at layers 2-4 to 40% at 8-10).",
          "slope of % changed per unit of relative depth, windows from layer 2 to 40% depth "
          "(bootstrap over probes)", -1),
    Claim("knockout_flat_late",
          "Past 40% of the depth the effect of non-dominant 3-layer knockouts is flat (Figure "
          "7: 15-32%).",
          "slope of % changed per unit of relative depth past 40% depth (bootstrap over "
          "probes)", 0,
          note="A flatness claim: supported when the interval covers 0 and lies within "
               "+-50 %/depth (a change under 50 points over the whole depth), contradicted "
               "when it excludes 0."),
    Claim("attention_content_before_promotion",
          "Not tested by the paper: memorized predictions read the idiom's content words in the "
          "layers up to their promotion (blocking the edges from the prediction position to "
          "them there lowers the prediction's probability).",
          "mean relative change of the prediction's probability (%), edges to the content "
          "words blocked in windows of ~20% of the depth ending at or before the probe's "
          "promotion layer (bootstrap over probes)", -1),
    Claim("attention_content_before_vs_after",
          "Not tested by the paper: memorized predictions read their content words before "
          "promotion more than after it.",
          "relative change (%), content words blocked before minus after the promotion layer, "
          "paired per probe (windows of ~20% of the depth; bootstrap over probes)", -1),
    Claim("attention_content_vs_nonmemorized",
          "Not tested by the paper: memorized predictions depend on the idiom's content words "
          "more than non-memorized ones do.",
          "relative change (%) with the content words blocked, memorized minus non-memorized, "
          "every window of ~20% of the depth (bootstrap per group)", -1),
    Claim("attention_content_vs_function",
          "Not tested by the paper: memorized predictions depend on the idiom's content words "
          "more than on its function words.",
          "relative change (%), content words blocked minus function words blocked, paired per "
          "memorized probe, every window of ~20% of the depth (bootstrap over probes)", -1),
    Claim("facts_promotion",
          "Memorized facts are promoted earlier than non-memorized facts (§6, Figure 4).",
          "Cliff's delta (memorized vs non-memorized facts) of the promotion layer", -1,
          intermediate=True),
    Claim("facts_boost",
          "Memorized facts gain more confidence after promotion than non-memorized facts "
          "(§6, Figure 4).",
          "Cliff's delta (memorized vs non-memorized facts) of the confidence boost", +1,
          intermediate=True),
)
FLAT_MARGIN = 50.0
"""Half-width (% changed per unit of depth) within which a late slope counts as flat."""


def claim_verdict(claim: Claim, value: float, ci_low: float, ci_high: float) -> str:
    """The fixed rule: ``supported``, ``contradicted`` or ``inconclusive`` (module docstring).

    A flatness claim (``expected_sign == 0``) is supported when its interval covers ``null``
    and lies within ``null ± FLAT_MARGIN``, contradicted when the interval excludes ``null``.
    """
    if any(v is None or not np.isfinite(v) for v in (value, ci_low, ci_high)):
        return "inconclusive"
    above, below = ci_low > claim.null, ci_high < claim.null
    if claim.expected_sign == 0:
        if above or below:
            return "contradicted"
        within = claim.null - FLAT_MARGIN <= ci_low and ci_high <= claim.null + FLAT_MARGIN
        return "supported" if within else "inconclusive"
    side = np.sign(value - claim.null)
    if side == claim.expected_sign and (above if side > 0 else below):
        return "supported"
    if side == -claim.expected_sign and (above if side > 0 else below):
        return "contradicted"
    return "inconclusive"


def claim_row(claim_id: str, model: str, population: str, lens: str,
              stat: Mapping[str, Any]) -> dict:
    """One ``claims.csv`` row: ``stat`` (``value, ci_low, ci_high, p_value, n``) and its verdict.

    ``statistic`` defaults to the claim's (``stat`` may name a more specific one).
    """
    claim = CLAIMS[claim_id]
    if population not in POPULATIONS:
        raise ValueError(f"population {population!r}: expected one of {list(POPULATIONS)}")
    if lens not in LENS_IDS:
        raise ValueError(f"lens {lens!r}: expected one of {LENS_IDS}")
    if lens != "logit" and not claim.intermediate:
        raise ValueError(f"{claim_id} is not about intermediate layers: logit lens only")
    value, lo, hi = (float(stat.get(k, np.nan)) for k in ("value", "ci_low", "ci_high"))
    return {"claim": claim_id, "model": model, "population": population, "lens": lens,
            "statistic": stat.get("statistic", claim.statistic), "value": value,
            "ci_low": lo, "ci_high": hi, "p_value": float(stat.get("p_value", np.nan)),
            "n": int(stat.get("n", 0)), "verdict": claim_verdict(claim, value, lo, hi)}


def claims_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a frame with exactly :data:`CLAIM_COLUMNS`, in :data:`CLAIMS` order."""
    frame = pd.DataFrame(list(rows), columns=CLAIM_COLUMNS)
    order = {c: i for i, c in enumerate(CLAIMS)}
    frame = frame.iloc[np.argsort(frame["claim"].map(order).to_numpy(), kind="stable")]
    return frame.reset_index(drop=True)


def find_claim(rows: pd.DataFrame | Iterable[Mapping[str, Any]], claim: str, model: str,
               population: str = "filtered", lens: str = "logit") -> dict | None:
    """The row of (``claim``, ``model``, ``population``, ``lens``) in ``rows``, or None."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        return None
    hit = frame[(frame["claim"] == claim) & (frame["model"] == model)
                & (frame["population"] == population) & (frame["lens"] == lens)]
    return hit.iloc[0].to_dict() if len(hit) else None


def merge_claims(old: pd.DataFrame | None, rows: pd.DataFrame,
                 retract: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """``old`` with every (claim, model, population, lens) of ``rows`` replaced by ``rows``'s.

    Each notebook writes the claims it measures; the others' rows stay, except those matching
    one of ``retract`` (column -> value, e.g. ``{"model": m, "lens": "tuned"}`` for a lens that
    no longer enters the verdicts), which are removed.
    """
    keys = ["claim", "model", "population", "lens"]
    if old is None or old.empty:
        return claims_frame(rows.to_dict("records"))
    dropped = old.set_index(keys).index.isin(rows.set_index(keys).index)
    for match in retract:
        dropped |= np.logical_and.reduce([old[column].eq(value).to_numpy()
                                          for column, value in match.items()])
    return claims_frame([*old[~dropped].to_dict("records"), *rows.to_dict("records")])


def select_population(frame: pd.DataFrame, population: str) -> pd.DataFrame:
    """The rows of ``population``, fresh index: idioms of ``filtered`` (``hard_to_guess``) or all.

    ``frame``: idiom results (every row an idiom; IdioMem's ``source`` column names the
    dictionary it came from), or a labelled frame (:func:`memrecall.analysis.label_groups`,
    with ``group``) whose rows of other sources (Wikipedia, facts) are always kept.
    """
    if population not in POPULATIONS:
        raise ValueError(f"population {population!r}: expected one of {list(POPULATIONS)}")
    if population == "all":
        return frame.reset_index(drop=True)
    if "hard_to_guess" not in frame.columns:
        raise ValueError("population 'filtered' needs IdioMem's hard_to_guess column")
    # a labelled frame's ``source`` says idioms / wikipedia / facts; a plain idiom frame's is
    # IdioMem's own column (the dictionary an idiom came from), so every row is an idiom
    labelled = "group" in frame.columns and "source" in frame.columns
    idiom = frame["source"].eq("idioms") if labelled else pd.Series(True, index=frame.index)
    keep = ~idiom | frame["hard_to_guess"].fillna(False).astype(bool)
    return frame[keep].reset_index(drop=True)
