"""Each notebook's claims, for both idiom populations, merged into ``claims.csv``.

Notebook 03 measures the projection claims (promotion, boost, first-layer rank, frequency,
clusters, the classifier), notebook 04 the facts claims, notebook 05 the knockout claims and
notebook 06 the intermediate-layer claims under the fitted lenses. Every claim that reads lens
results is measured on both populations (:data:`memrecall.analysis.POPULATIONS`: the paper's
filtered idioms, and all of them as a sensitivity check); the knockout probes are drawn from the
run's population only (a second sweep would double notebook 05).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ..analysis import claim_rows
from ..analysis.claims import POPULATIONS, claims_frame, select_population
from ..analysis.projection import label_groups
from ..models import LM
from ..report.claims import merge_claims_file
from .projection import classifier_results
from .runs import Settings

__all__ = ["CLAIMS_FILE", "facts_claims", "knockout_claims", "lens_claims", "left_out_claims",
           "projection_claims", "write_claims"]

CLAIMS_FILE = "claims.csv"


def projection_claims(lm: LM, run: Settings, idiom_res: pd.DataFrame,
                      wiki_res: pd.DataFrame) -> list[dict]:
    """Notebook 03's claims for ``lm``, on both populations (logit lens).

    Args:
        lm: the model (its tokenizer spells the predictions; the classifier reads it, cached).
        run: the settings.
        idiom_res: all its idiom results (:func:`memrecall.pipeline.idiom_results`).
        wiki_res: its Wikipedia results.

    Returns:
        ``claims.csv`` rows: the group claims, ``frequency`` (idioms + Wikipedia),
        ``clusters_boost`` and the two classifier claims, per population.
    """
    rows = []
    for population in POPULATIONS:
        idioms = select_population(idiom_res, population)
        labelled = label_groups(idioms, wiki_res)
        rows += claim_rows.group_claims(lm.name, labelled, population, seed=run.seed)
        rows.append(claim_rows.frequency_claim(lm.name, labelled, lm.tokenizer, population))
        rows.append(claim_rows.clusters_claim(lm.name, idioms, population, seed=run.seed))
        splits = classifier_results(lm, idioms, run).splits
        rows += claim_rows.classifier_claims(lm.name, splits, population)
    return rows


def lens_claims(model: str, labelled: Mapping[str, pd.DataFrame], lens_ids: Mapping[str, str],
                seed: int = 0, admission: pd.DataFrame | None = None) -> list[dict]:
    """The intermediate-layer claims of ``model`` under each reading, on both populations.

    Args:
        model: the model's name.
        labelled: reading label -> its labelled results of all idioms and Wikipedia
            (:func:`memrecall.pipeline.lens_results`).
        lens_ids: reading label -> its ``claims.csv`` id (``logit``, ``shortcut``, ``tuned``).
        seed: seeds the bootstraps.
        admission: :func:`memrecall.analysis.lens_admission` rows; a reading it does not admit
            for ``model`` is left out (see :func:`left_out_claims`).
    """
    left_out = set() if admission is None else set(
        admission.loc[(admission["model"] == model) & ~admission["admitted"], "lens"])
    return [row for label, frame in labelled.items() if label not in left_out
            for population in POPULATIONS
            for row in claim_rows.group_claims(model, select_population(frame, population),
                                               population, lens_ids[label], seed)]


def left_out_claims(admission: pd.DataFrame,
                    lens_ids: Mapping[str, Mapping[str, str]]) -> list[dict[str, str]]:
    """What to retract from ``claims.csv``: ``{"model", "lens"}`` of every lens not admitted.

    Args:
        admission: :func:`memrecall.analysis.lens_admission` rows.
        lens_ids: model -> reading label -> its ``claims.csv`` id.
    """
    return [{"model": row.model, "lens": lens_ids[row.model][row.lens]}
            for row in admission.itertuples() if not row.admitted]


def facts_claims(model: str, labelled: pd.DataFrame, seed: int = 0) -> list[dict]:
    """``facts_promotion`` and ``facts_boost`` of ``model`` (logit lens), for both populations.

    Facts have no idiom filter, so both populations' rows hold the same numbers (they are
    written for both so that each population's table is whole).

    Args:
        model: the model's name.
        labelled: its labelled results with the two fact groups
            (:func:`memrecall.analysis.label_groups` with ``facts_res``).
        seed: seeds the bootstraps.
    """
    facts = labelled[labelled["source"] == "facts"]
    return [{**row, "population": population} for population in POPULATIONS
            for row in claim_rows.group_claims(model, facts, population, seed=seed)]


def knockout_claims(run: Settings, results: Mapping[str, Any]) -> pd.DataFrame:
    """Notebook 05's knockout claims of every model, merged into ``claims.csv``.

    Args:
        run: the settings (the probes' population, the sweep's k).
        results: model -> :class:`memrecall.pipeline.KnockoutResults`.

    Returns:
        The rows written.
    """
    k = run.knockout_ks[0] if len(run.knockout_ks) == 1 else 10
    rows = [row for name, res in results.items()
            for row in claim_rows.knockout_claims(name, res.detail, res.n_layers, run.population,
                                                  k=k, seed=run.seed)]
    return write_claims(run, rows)


def write_claims(run: Settings, rows: Iterable[Mapping[str, Any]],
                 retract: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Merge ``rows`` into ``<results>/claims.csv``; returns the rows written, as a frame.

    ``retract``: rows to remove besides (column -> value; e.g. a lens left out of the verdicts).
    """
    rows = claims_frame(list(rows))
    merge_claims_file(run.results_dir / CLAIMS_FILE, rows.to_dict("records"), retract)
    return rows
