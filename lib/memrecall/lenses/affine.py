"""Fitted lenses: one affine translator per layer, read through the model's own head afterwards.

Both fitted lenses have the same form, ``h_l -> h_l + h_l A_l^T + b_l`` for every layer but the
last, which is left untouched (so the last layer is the model's own distribution exactly, under
every lens). They differ in how ``A_l, b_l`` are fitted: the linear shortcut by least squares
(:mod:`.shortcut`), the tuned lens by minimising a KL divergence (:mod:`.tuned`).

On disk a lens is two files: ``<name>.safetensors`` (the tensors) and ``<name>.json`` (what it
was fitted for and on: model, revision, code fingerprint, training data and its sha256, token
count, seed, hyperparameters).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from .._io import atomic_write, atomic_write_text, code_fingerprint
from ..models import LM
from ..models.finite import NonFiniteError
from .text import TextChunks

__all__ = [
    "AffineLens", "LensMismatchError", "fit_meta", "lens_files", "load_lens", "translate",
]


class LensMismatchError(ValueError):
    """A fitted lens was asked to read a model (or revision) it was not fitted for."""


def translate(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Apply one affine translator per layer: ``h + h A^T + b``.

    Args:
        hidden: ``(layers, rows, d)`` block outputs, float32.
        weight: ``(layers, d, d)`` the matrices ``A_l``.
        bias: ``(layers, d)`` the offsets ``b_l``.

    Returns:
        ``(layers, rows, d)`` translated states (differentiable in ``weight`` and ``bias``).
    """
    return hidden + torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))


def _check_finite(weight: torch.Tensor, bias: torch.Tensor, source: str) -> None:
    """Refuse translators holding a NaN or inf, naming ``source``, the tensor and the layer."""
    for name, tensor in (("weight", weight), ("bias", bias)):
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        bad = (~finite).reshape(len(tensor), -1).any(1)
        layer = int(torch.nonzero(bad)[0, 0]) + 1
        raise NonFiniteError(
            f"{source}: the lens's {name} holds {int((~finite).sum())} NaN or inf value(s), "
            f"first in the translator of layer {layer} (1-based); refit the lens",
            layer=layer)


class AffineLens:
    """Per-layer affine translators of block outputs, applied before the final norm.

    Args:
        weight: ``(n_layers - 1, d, d)`` float32, the matrices ``A_l`` (zero: the logit lens).
        bias: ``(n_layers - 1, d)`` float32, the offsets ``b_l``.
        meta: provenance; must hold ``model``, ``revision``, ``n_layers`` and ``d_model``.
    """

    kind: ClassVar[str] = "affine"
    label: ClassVar[str] = "affine lens"
    short: ClassVar[str] = "affine"
    color: ClassVar[str] = "#808080"
    linestyle: ClassVar[str] = ":"
    kinds: ClassVar[dict[str, type[AffineLens]]] = {}  # kind -> class, for load_lens

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AffineLens.kinds[cls.kind] = cls

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, meta: Mapping[str, Any]) -> None:
        if weight.ndim != 3 or weight.shape[1] != weight.shape[2]:
            raise ValueError(f"weight must be (layers, d, d), got {tuple(weight.shape)}")
        if bias.shape != weight.shape[:2]:
            raise ValueError(f"bias must be {tuple(weight.shape[:2])}, got {tuple(bias.shape)}")
        _check_finite(weight, bias, f"{type(self).__name__} for {meta.get('model')!r}")
        self.weight = weight.float().contiguous()
        self.bias = bias.float().contiguous()
        self.meta = {**meta, "kind": self.kind}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.meta.get('model')!r}, {self.n_layers} layers, "
                f"d={self.d_model}, {self.meta.get('data', {}).get('n_tokens', '?')} tokens)")

    @property
    def n_layers(self) -> int:
        """Layers of the model it reads (translators are fitted for all but the last)."""
        return self.weight.shape[0] + 1

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return self.weight.shape[1]

    def check(self, lm: LM) -> None:
        """Refuse a model this lens was not fitted for.

        Raises:
            LensMismatchError: another model name, revision, depth or width.
        """
        fitted = (self.meta.get("model"), self.meta.get("revision"), self.n_layers, self.d_model)
        width = lm.arch.unembed_weight.shape[1]
        given = (lm.name, lm.revision, lm.n_layers, width)
        if fitted != given:
            raise LensMismatchError(
                f"this {self.label} was fitted for {fitted[0]!r} (revision {fitted[1]!r}, "
                f"{fitted[2]} layers, d={fitted[3]}), not for {given[0]!r} (revision "
                f"{given[1]!r}, {given[2]} layers, d={given[3]}); fit one for this model")

    def fingerprint(self) -> str:
        """A hash of the translators (16 hex characters): what identifies the fitted lens."""
        digest = hashlib.sha256(self.kind.encode())
        for tensor in (self.weight, self.bias):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def cache_key(self) -> dict[str, str]:
        """The lens's kind and fingerprint, for the key of results read through it."""
        return {"lens": self.kind, "lens_fingerprint": self.fingerprint()}

    def to(self, device: torch.device | str) -> AffineLens:
        """The same lens with its tensors on ``device``."""
        return type(self)(self.weight.to(device), self.bias.to(device), self.meta)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """Translate block outputs: ``(n_layers, rows, d) -> (n_layers, rows, d)``.

        Every layer but the last goes through its translator (in float32, returned in
        ``hidden``'s dtype); the last layer is copied unchanged.
        """
        if hidden.shape[0] != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers, got {hidden.shape[0]}")
        weight, bias = self.weight.to(hidden.device), self.bias.to(hidden.device)
        moved = translate(hidden[:-1].float(), weight, bias).to(hidden.dtype)
        return torch.cat([moved, hidden[-1:]])

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` and ``<path>.json`` (atomically); returns the first."""
        tensors_path, meta_path = lens_files(path)
        tensors = {"weight": self.weight.cpu().contiguous(), "bias": self.bias.cpu().contiguous()}
        atomic_write(tensors_path, lambda temp: save_file(tensors, str(temp)))
        atomic_write_text(meta_path, json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
        return tensors_path


def lens_files(path: str | Path) -> tuple[Path, Path]:
    """The two files of a saved lens: ``(<stem>.safetensors, <stem>.json)``."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def load_lens(path: str | Path, lm: LM | None = None) -> AffineLens:
    """Read a lens written by :meth:`AffineLens.save`.

    Args:
        path: ``<stem>``, ``<stem>.safetensors`` or ``<stem>.json``.
        lm: if given, the lens is checked against it (and moved to its device).

    Raises:
        LensMismatchError: ``lm`` is not the model (or revision) the lens was fitted for.
        NonFiniteError: the file holds a NaN or inf (names the file, the tensor, the layer).
    """
    tensors_path, meta_path = lens_files(path)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tensors = load_file(str(tensors_path))
    _check_finite(tensors["weight"], tensors["bias"], str(tensors_path))
    cls = AffineLens.kinds.get(meta.get("kind"))
    if cls is None:
        raise ValueError(f"{meta_path}: unknown lens kind {meta.get('kind')!r}; "
                         f"known: {sorted(AffineLens.kinds)}")
    lens = cls(tensors["weight"], tensors["bias"], meta)
    if lm is not None:
        lens.check(lm)
        lens = lens.to(lm.device)
    return lens


def fit_meta(lm: LM, chunks: TextChunks, hyperparameters: Mapping[str, Any], *, seed: int,
             seconds: float) -> dict[str, Any]:
    """A fitted lens's metadata: the model, the code, the data, the seed, the hyperparameters."""
    return {
        "model": lm.name,
        "revision": lm.revision,
        "model_type": lm.arch.model_type,
        "n_layers": lm.n_layers,
        "d_model": int(lm.arch.unembed_weight.shape[1]),
        "code_fingerprint": code_fingerprint(),
        "data": chunks.provenance(),
        "seed": seed,
        "hyperparameters": dict(hyperparameters),
        "fit_seconds": round(seconds, 3),
    }
