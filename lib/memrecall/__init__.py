"""memrecall: layer-wise analysis of memorized predictions in transformer LMs.

>>> import memrecall as mr
>>> lm = mr.load("gemma-3-270m")
>>> probes = mr.make_probes(mr.load_idiomem()["idiom"], lm)
>>> res = mr.project(lm, probes)
"""

__version__ = "0.1.0"

from .data import load_facts, load_idiomem, load_wiki
from .lenses import LogitLens, project
from .models import LM, REGISTRY, load, profile_models, wrap
from .probes import make_probes
from .profiles import PROFILES

__all__ = [
    "LM",
    "LogitLens",
    "PROFILES",
    "REGISTRY",
    "load",
    "load_facts",
    "load_idiomem",
    "load_wiki",
    "make_probes",
    "profile_models",
    "project",
    "wrap",
]
