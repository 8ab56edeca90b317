"""The registry: the names ``mr.load`` knows, and the models of each profile.

Hub models, packaged GGUF files (:mod:`memrecall.models.packaged`) and tiny random models;
the profiles are defined in :mod:`memrecall.profiles`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

from ..profiles import profile
from .packaged import PACKAGED_GGUF, PackagedGGUF
from .tiny import TINY_MODELS

__all__ = ["REGISTRY", "RegisteredModel", "package_version", "profile_models"]


def package_version(distribution: str) -> str:
    """``"name==version"`` of an installed distribution (what pins a packaged model's weights)."""
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


@dataclass(frozen=True)
class RegisteredModel:
    """One registry entry: a hub id, a packaged GGUF file or a tiny random model."""

    hub_id: str | None = None
    gguf: PackagedGGUF | None = None
    tiny: bool = False
    description: str = ""


REGISTRY: dict[str, RegisteredModel] = {
    "gpt2-medium": RegisteredModel(hub_id="openai-community/gpt2-medium",
                                   description="GPT-2 medium, 24 layers (paper)"),
    "gpt2-large": RegisteredModel(hub_id="openai-community/gpt2-large",
                                  description="GPT-2 large, 36 layers (paper)"),
    "bert-base-uncased": RegisteredModel(hub_id="google-bert/bert-base-uncased",
                                         description="BERT base, 12 layers (paper)"),
    "bert-large-uncased": RegisteredModel(hub_id="google-bert/bert-large-uncased",
                                          description="BERT large, 24 layers (paper)"),
    "gemma-3-270m": RegisteredModel(gguf=PACKAGED_GGUF["gemma-3-270m"],
                                    description="Gemma 3 270M base, GGUF Q4_K_M, 18 layers"),
    "smollm2-135m": RegisteredModel(gguf=PACKAGED_GGUF["smollm2-135m"],
                                    description="SmolLM2-135M-Instruct, GGUF Q4_1, 30 layers"),
    "qwen2.5-coder-0.5b": RegisteredModel(
        gguf=PACKAGED_GGUF["qwen2.5-coder-0.5b"],
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, 24 layers"),
    **{name: RegisteredModel(tiny=True, description="tiny random model (tests only)")
       for name in TINY_MODELS},
}


def profile_models(name: str) -> list[str]:
    """The registry names of a profile (``paper``, ``offline`` or ``smoke``)."""
    return list(profile(name).models)
