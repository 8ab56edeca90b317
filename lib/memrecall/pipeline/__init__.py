"""The notebooks' steps: a run's settings and the cached per-model results each notebook reads.

:mod:`.settings` (:class:`Settings`), :mod:`.dataset` (notebook 01's tokenizer table),
:mod:`.projection` (lens results of idioms, Wikipedia, facts; Table 5; the memorization split),
:mod:`.knockouts` (notebook 05), :mod:`.lenses` (notebook 06), :mod:`.attention` (notebook
07), :mod:`.sections` (the group
figures notebooks 03 and 04 both draw), :mod:`.claims` (each notebook's claims into
``claims.csv``).
"""

from .attention import (
    AttentionResults,
    attention_claims,
    attention_results,
    cached_attention_sweep,
    write_attention_outputs,
)
from .claims import (
    CLAIMS_FILE,
    facts_claims,
    knockout_claims,
    left_out_claims,
    lens_claims,
    projection_claims,
    write_claims,
)
from .dataset import multi_token_table
from .knockouts import (
    KnockoutResults,
    cached_knockout_sweep,
    intervention_probes,
    knockout_config,
    knockout_norm_comparison,
    knockout_results,
    knockout_runtime,
    write_knockout_outputs,
)
from .lenses import (
    LENS_CHOICES,
    cached_lens,
    fitted_lenses,
    lens_kl,
    lens_results,
    lens_text,
    read_lens,
    stored_lenses,
)
from .projection import (
    ClassifierResults,
    cached_project,
    classifier_results,
    facts_results,
    idiom_results,
    idioms,
    memorization_results,
    wiki_results,
    wiki_texts,
)
from .runs import INTERACTIVE_DIR, Settings, settings, table_display
from .sections import cross_model, cross_model_title, layerwise_figures, promotion_by_model

__all__ = [
    "AttentionResults",
    "CLAIMS_FILE",
    "INTERACTIVE_DIR",
    "LENS_CHOICES",
    "ClassifierResults",
    "KnockoutResults",
    "Settings",
    "attention_claims",
    "attention_results",
    "cached_attention_sweep",
    "cached_knockout_sweep",
    "cached_lens",
    "cached_project",
    "classifier_results",
    "cross_model",
    "cross_model_title",
    "facts_claims",
    "facts_results",
    "fitted_lenses",
    "idiom_results",
    "idioms",
    "intervention_probes",
    "knockout_claims",
    "knockout_config",
    "knockout_norm_comparison",
    "knockout_results",
    "knockout_runtime",
    "layerwise_figures",
    "lens_claims",
    "left_out_claims",
    "lens_kl",
    "lens_results",
    "lens_text",
    "memorization_results",
    "multi_token_table",
    "projection_claims",
    "promotion_by_model",
    "read_lens",
    "settings",
    "stored_lenses",
    "table_display",
    "wiki_results",
    "wiki_texts",
    "write_attention_outputs",
    "write_claims",
    "write_knockout_outputs",
]
