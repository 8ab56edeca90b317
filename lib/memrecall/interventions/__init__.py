"""Knockouts: FFN sub-updates and neurons (Haviv et al. 2023; Geva et al. 2022), attention edges.

Attention edges as in Geva et al. 2023 ("Dissecting Recall of Factual Associations").

One engine that returns tensors and frames; no statistics, no prose (those are in
:mod:`memrecall.analysis` and :mod:`memrecall.report`), no cache (:mod:`memrecall.pipeline`).

* :mod:`~memrecall.interventions.neurons`: value vectors, neuron scores ``|m_i| * ||v_i||``, the
  top-k per layer, seeded random draws;
* :mod:`~memrecall.interventions.controls`: the :class:`Control` table (dominant, non_dominant,
  random): names, labels, line styles, how each draws its neurons;
* :mod:`~memrecall.interventions.knockout`: the :func:`knockout` and :func:`neuron_masks`
  context managers (on Gemma 2/3 the norm after the MLP frozen at its clean scale, so a
  knockout removes exactly the knocked-out sub-updates, as on the paper's GPT-2);
* :mod:`~memrecall.interventions.resume`: probe batches and forwards, resumed at any block from a
  recorded clean run;
* :mod:`~memrecall.interventions.sweep`: :class:`SweepConfig`, :func:`knockout_sweep` (many
  (configuration, probe) rows per forward), :func:`summarize_sweep`;
* :mod:`~memrecall.interventions.readout`: window matrices, layer profiles, value-vector
  read-outs;
* :mod:`~memrecall.interventions.attention`: :func:`blocked_edges` (per row and layer, the keys
  the prediction position may not read, through the attention functions' own mask) and
  :func:`source_positions` (content / function words, first token, all previous positions);
* :mod:`~memrecall.interventions.attention_sweep`: :class:`AttentionSweepConfig`,
  :func:`attention_sweep` (every window of layers and source set, many rows per forward).
"""

from __future__ import annotations

from .attention import SOURCE_SETS, blocked_edges, source_positions
from .attention_sweep import (
    ATTENTION_KEYS,
    AttentionSweepConfig,
    attention_configs,
    attention_sweep,
    attention_windows,
)
from .controls import CONTROL_TABLE, CONTROLS, PAPER_CONTROLS, Control, control
from .knockout import Scope, knockout, neuron_masks
from .neurons import (
    TopNeurons,
    mlp_width,
    neuron_scores,
    random_neurons,
    top_neurons,
    value_vector_logits,
    value_vector_tokens,
    value_vectors,
)
from .readout import (
    layer_profile,
    prediction_rank_in_value_vectors,
    sub_update_examples,
    window_matrix,
    window_panels,
)
from .resume import CleanRun
from .summary import SWEEP_KEYS, summarize_sweep
from .sweep import (
    PAPER_KS,
    PAPER_MAX_WINDOW,
    RELEASED_KS,
    RELEASED_MAX_WINDOW,
    SweepConfig,
    knockout_configs,
    knockout_sweep,
)

__all__ = [
    "ATTENTION_KEYS",
    "CONTROLS",
    "CONTROL_TABLE",
    "PAPER_CONTROLS",
    "PAPER_KS",
    "PAPER_MAX_WINDOW",
    "RELEASED_KS",
    "RELEASED_MAX_WINDOW",
    "SOURCE_SETS",
    "SWEEP_KEYS",
    "AttentionSweepConfig",
    "CleanRun",
    "Control",
    "Scope",
    "SweepConfig",
    "TopNeurons",
    "attention_configs",
    "attention_sweep",
    "attention_windows",
    "blocked_edges",
    "control",
    "knockout",
    "knockout_configs",
    "knockout_sweep",
    "layer_profile",
    "mlp_width",
    "neuron_masks",
    "neuron_scores",
    "prediction_rank_in_value_vectors",
    "random_neurons",
    "source_positions",
    "sub_update_examples",
    "summarize_sweep",
    "top_neurons",
    "value_vector_logits",
    "value_vector_tokens",
    "value_vectors",
    "window_matrix",
    "window_panels",
]
