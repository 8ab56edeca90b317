"""Where the weights go and in what precision: one device, or blocks spread over several.

* :func:`resolve_dtype`: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or a ``torch.dtype``);
* :func:`place`: the whole model on one device, or dispatched by ``accelerate`` along a device
  map (``"auto"``: balanced over the GPUs, then CPU, then disk), each block with a hook that
  moves its inputs to its own device.

The lens reads the final norm and the unembedding directly (not through their forward), so
those two must stay resident on a device: a map that offloads them fails here, loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .architectures import resolve

__all__ = ["DTYPES", "DeviceMap", "OffloadedHeadError", "place", "resolve_dtype"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The weight dtypes ``load`` accepts, by name."""

DeviceMap = str | Mapping[str, str | int | torch.device]


class OffloadedHeadError(ValueError):
    """A device map that offloads the unembedding (the lens needs it resident)."""


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """A ``torch.dtype`` from a name of :data:`DTYPES` (default float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype {dtype} is not supported; choose from {', '.join(DTYPES)}")
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; choose from {', '.join(DTYPES)}")
    return DTYPES[name]


def _auto_map(model: nn.Module, dtype: torch.dtype) -> dict:
    """The balanced map of ``accelerate``: whole blocks per GPU, then CPU, then disk."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    no_split = list(getattr(model, "_no_split_modules", None) or [])
    memory = get_balanced_memory(model, no_split_module_classes=no_split, dtype=dtype)
    return infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split,
                                 dtype=dtype)


def place(model: nn.Module, device: torch.device, device_map: DeviceMap | None = None,
          offload_folder: str | Path | None = None) -> nn.Module:
    """Put ``model`` on ``device``, or dispatch it along ``device_map``.

    Args:
        model: a loaded model (on CPU).
        device: where the whole model goes when there is no map.
        device_map: ``"auto"`` or a map from module names to devices (``0``, ``"cuda:1"``,
            ``"cpu"``, ``"disk"``), as in ``accelerate.dispatch_model``. With a GPU in the map,
            ``"cpu"`` and ``"disk"`` entries are offloaded (their weights move to the GPU for
            their forward).
        offload_folder: where ``"disk"`` entries are written (needed only for those).

    Raises:
        OffloadedHeadError: the map offloads the final norm or the unembedding.
    """
    if device_map is None:
        return model.to(device)
    from accelerate import dispatch_model

    dtype = next(model.parameters()).dtype
    mapping = _auto_map(model, dtype) if device_map == "auto" else dict(device_map)
    if "disk" in mapping.values() and offload_folder is None:
        raise ValueError("a device map with 'disk' entries needs an offload_folder")
    model = dispatch_model(model, device_map=mapping,
                           offload_dir=None if offload_folder is None else str(offload_folder))
    arch = resolve(model)
    norm = [] if arch.final_norm is None else list(arch.final_norm.parameters())
    if any(p.device.type == "meta" for p in [arch.unembed_weight, *norm]):
        raise OffloadedHeadError(
            "this device map offloads the final norm or the unembedding "
            f"({ {k: v for k, v in mapping.items() if v in ('cpu', 'disk')} }); the lens reads "
            "them directly: map them (e.g. 'lm_head' and 'model.norm') to a device")
    return model
