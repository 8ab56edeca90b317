"""Notebook 01 for reading: its conclusions, computed from its tables."""

from __future__ import annotations

import pandas as pd

from ..analysis.dataset import flag_counts, hard_to_guess_holds, word_counts

__all__ = ["dataset_conclusions"]


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.1f}%"


def dataset_conclusions(provenance: pd.DataFrame, idioms: pd.DataFrame,
                        multi_token: pd.DataFrame, overlap: pd.DataFrame,
                        differences: pd.DataFrame, wiki: pd.DataFrame,
                        facts: pd.DataFrame) -> str:
    """The closing text of notebook 01 (Markdown bullets), numbers only.

    Args:
        provenance: :func:`memrecall.data.provenance_table` output.
        idioms: IdioMem as loaded (``idiom``, ``id``, ``source``, the four flags).
        multi_token: one row per model (index ``model``) of
            :func:`memrecall.analysis.dataset.multi_token_row` values.
        overlap: :func:`memrecall.data.idiomem_rebuild.compare_with_release` output.
        differences: :func:`memrecall.data.idiomem_rebuild.release_differences` output.
        wiki: the Wikipedia control (``text``).
        facts: the facts set (``text``).

    Returns:
        Bullets on provenance, IdioMem, its flags, multi-token targets, the rebuild and the
        control sets.

    """
    n = len(idioms)
    n_words = word_counts(idioms["idiom"])
    sources = idioms["source"].value_counts()
    shared = idioms[idioms["id"].duplicated(keep=False)]
    lines = [
        f"* **Provenance**: {int(provenance['verified'].sum())} of {len(provenance)} data files "
        "match their pinned sha256.",
        f"* **IdioMem**: {n} idioms ({idioms['idiom'].nunique()} distinct strings, "
        f"{idioms['id'].nunique()} distinct ids; {len(shared)} records share an id with another), "
        f"{n_words.min()}–{n_words.max()} words (mean {n_words.mean():.1f}); by source: "
        + ", ".join(f"{source} {count}" for source, count in sources.items()) + ".",
    ]
    counts = flag_counts(idioms)["true"]
    both = int((idioms["hard_to_guess"] & idioms["frequent_target_ind"]).sum())
    lines.append(
        f"* **Flags**: `hard_to_guess == not prompt_comp_ind and not similarity_ind` holds on "
        f"{hard_to_guess_holds(idioms)} of {n} rows; "
        + ", ".join(f"{int(k)} `{flag}`" for flag, k in counts.items())
        + f"; {both} idioms are `hard_to_guess` and pass the frequent-target filter.")
    for name, row in multi_token.iterrows():
        lines.append(
            f"* **Multi-token targets, {name}** ({row['tokenizer']}, vocabulary "
            f"{int(row['vocab'])}): {_pct(row['idioms: multi-token %'])} of idiom targets span "
            f"several sub-tokens (at most {int(row['idioms: max pieces'])}); Wikipedia "
            f"{_pct(row['wikipedia: multi-token %'])}, facts (last word) "
            f"{_pct(row['facts (last word): multi-token %'])}.")
    per_source = overlap[overlap["source"] != "total"]
    total = overlap[overlap["source"] == "total"].iloc[0]
    definitions = differences[(differences["in"] == "released only")
                              & differences["in LIdioms file as"].str.contains("definition")]
    lines.append(
        "* **Rebuild**: released idioms rebuilt under the same source: "
        + ", ".join(f"{r.source} {r.both} of {r.released}" for r in per_source.itertuples())
        + f"; in all {int(total['both'])} of {int(total['released'])} "
        f"({_pct(100 * total['recall'])}). {int(total['only_rebuilt'])} rebuilt idioms are in "
        f"no released source; {len(definitions)} released-only strings occur in the LIdioms "
        "file as a definition.")
    wiki_words, facts_words = word_counts(wiki["text"]), word_counts(facts["text"])
    lines.append(
        f"* **Controls**: {len(wiki)} Wikipedia texts of {wiki_words.min()}–{wiki_words.max()} "
        f"words (mean {wiki_words.mean():.1f}, idioms {n_words.mean():.1f}); {len(facts)} facts "
        f"of {facts_words.min()}–{facts_words.max()} words (mean {facts_words.mean():.1f}).")
    return "\n".join(lines)
