"""Forward passes: batches under a memory budget, hooks, block outputs, greedy continuation.

:mod:`.batching` (inputs, padding, budgets, out-of-memory halving: the one rule),
:mod:`.hooks` (context managers), :mod:`.blocks` (block outputs, final hidden states),
:mod:`.generate` (whole-word continuation).
"""

from .batching import (
    ACTIVATION_BYTES,
    BATCH_OVERHEAD_TOKENS,
    CUDA_FREE_FRACTION,
    MIN_ACTIVATION_BYTES,
    activation_bytes,
    activation_token_budget,
    batch_overhead_tokens,
    check_batch_size,
    halve_on_oom,
    halves,
    is_out_of_memory,
    iter_halving,
    model_inputs,
    pad_left,
    pad_right,
    plan_batches,
)
from .blocks import block_outputs, final_hidden_states, model_features, prompt_token_ids
from .generate import whole_word_continuation
from .hooks import (
    Call,
    capture_at_positions,
    capture_inputs_at_positions,
    capture_where,
    forward_hooks,
    record_calls,
    scale_inputs_hook,
    zero_neurons_hook,
)

__all__ = [
    "ACTIVATION_BYTES",
    "BATCH_OVERHEAD_TOKENS",
    "CUDA_FREE_FRACTION",
    "MIN_ACTIVATION_BYTES",
    "Call",
    "activation_bytes",
    "activation_token_budget",
    "batch_overhead_tokens",
    "block_outputs",
    "capture_at_positions",
    "capture_inputs_at_positions",
    "capture_where",
    "check_batch_size",
    "final_hidden_states",
    "forward_hooks",
    "halve_on_oom",
    "halves",
    "is_out_of_memory",
    "iter_halving",
    "model_features",
    "model_inputs",
    "pad_left",
    "pad_right",
    "plan_batches",
    "prompt_token_ids",
    "record_calls",
    "scale_inputs_hook",
    "whole_word_continuation",
    "zero_neurons_hook",
]
