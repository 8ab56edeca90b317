"""Models: registry names, hub ids, local folders, packaged GGUF files, tiny random models.

Everything returns an :class:`LM`: the Hugging Face model and tokenizer plus the resolved
architecture (:mod:`memrecall.models.architectures`), its head and provenance for the results
cache.

* :mod:`~memrecall.models.lm`: :class:`LM`, :func:`wrap`;
* :mod:`~memrecall.models.registry`: :data:`REGISTRY`, :func:`profile_models`;
* :mod:`~memrecall.models.loading`: :func:`load` (hub, local folder, GGUF, converted cache);
* :mod:`~memrecall.models.architectures`: the one architecture resolver;
* :mod:`~memrecall.models.tiny`: tiny random models for the tests.
"""

from .architectures import UnsupportedArchitectureError, supported_model_types
from .finite import NonFiniteError
from .lm import LM, wrap
from .loading import (
    DeviceUnavailableError,
    HubUnreachableError,
    ModelFolderError,
    UnknownModelError,
    check_device,
    converted_models_dir,
    default_device,
    load,
    unavailable_hub_models,
)
from .registry import REGISTRY, RegisteredModel, profile_models

__all__ = [
    "LM",
    "REGISTRY",
    "DeviceUnavailableError",
    "HubUnreachableError",
    "ModelFolderError",
    "NonFiniteError",
    "RegisteredModel",
    "UnknownModelError",
    "UnsupportedArchitectureError",
    "check_device",
    "converted_models_dir",
    "default_device",
    "load",
    "profile_models",
    "supported_model_types",
    "unavailable_hub_models",
    "wrap",
]
