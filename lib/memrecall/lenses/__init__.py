"""Fitted lenses: better readings of intermediate layers than the logit lens.

The logit lens (:class:`LogitLens`, the default of :func:`memrecall.project`)
reads every block output through the model's own final norm and unembedding. A fitted lens first
moves each layer's block output with an affine translator learnt on ordinary text, then reads it
the same way; the last layer is never moved, so it stays the model's own output exactly.

* :class:`LinearShortcut` (Din et al. 2023): least squares towards the last layer's block output.
* :class:`TunedLens` (Belrose et al. 2023): trained to minimise ``KL(final || lens)``.

Fit on WikiText-2 ``valid.txt``, evaluate on ``test.txt``::

    fit_text = lenses.wikitext_chunks(lm, "valid", n_tokens=4096)
    shortcut = lenses.LinearShortcut.fit(lm, fit_text)
    tuned = lenses.TunedLens.fit(lm, fit_text, init=shortcut, vocab_sample=4096)
    tuned.save("tuned_gemma")            # tuned_gemma.safetensors + tuned_gemma.json
    tuned = lenses.load_lens("tuned_gemma", lm)   # refuses another model or revision
    res = mr.project(lm, probes, lens=tuned)
    kl = lenses.held_out_kl(lm, lenses.wikitext_chunks(lm, "test", n_tokens=1024),
                            {"logit lens": mr.LogitLens(), "tuned lens": tuned})
"""

from .affine import AffineLens, LensMismatchError, fit_meta, lens_files, load_lens, translate
from .base import Lens, LogitLens
from .evaluate import KL_COLUMNS, held_out_kl
from .projection import (
    LensStats,
    layer_logits,
    layer_top_k,
    lens_stats,
    project,
    reference_logits,
    top_k_tokens,
)
from .shortcut import DEFAULT_RIDGE, LinearShortcut, NormalEquations
from .text import TextChunks, hidden_batches, text_chunks, wikitext_chunks
from .tuned import TunedLens, sampled_vocabulary

READINGS = (LogitLens, LinearShortcut, TunedLens)
"""The readings notebook 06 compares, in its order (the first is the paper's)."""

__all__ = [
    "DEFAULT_RIDGE",
    "KL_COLUMNS",
    "READINGS",
    "AffineLens",
    "Lens",
    "LensMismatchError",
    "LensStats",
    "LinearShortcut",
    "LogitLens",
    "NormalEquations",
    "TextChunks",
    "TunedLens",
    "fit_meta",
    "held_out_kl",
    "hidden_batches",
    "layer_logits",
    "layer_top_k",
    "lens_files",
    "lens_stats",
    "load_lens",
    "project",
    "reference_logits",
    "sampled_vocabulary",
    "text_chunks",
    "top_k_tokens",
    "translate",
    "wikitext_chunks",
]
