"""The run profiles, each defined once: which models, how many examples, which knockout grid.

``paper`` is the paper's setup (hub models; a GPU for the full knockout grid), ``offline`` the
packaged models on a CPU, ``smoke`` the tiny random models of the tests and CI.
:func:`memrecall.models.profile_models`, :func:`memrecall.pipeline.settings` and
``make reproduce`` all read :data:`PROFILES`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROFILES", "Profile", "profile"]


@dataclass(frozen=True)
class Profile:
    """One profile. ``None`` sample sizes mean "all".

    Attributes:
        name: ``paper``, ``offline`` or ``smoke``.
        models: registry names of its models, in order.
        n_idioms: IdioMem idioms probed.
        n_wiki: WikiText-2 control sentences.
        n_facts: known facts probed.
        n_knockout: probes per group in the knockout sweep (the authors used 30 memorized idioms).
        knockout_ks: numbers of top neurons knocked out.
        knockout_max_window: longest window of consecutive layers knocked out together.
    """

    name: str
    models: tuple[str, ...]
    n_idioms: int | None
    n_wiki: int
    n_facts: int | None
    n_knockout: int
    knockout_ks: tuple[int, ...]
    knockout_max_window: int


# The paper's full knockout grid (k up to 1000, windows of 1-5 layers) is for a GPU; on a CPU the
# offline profile keeps two k values and windows of up to 2 layers (about 10 minutes per model).
PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        Profile("paper", ("gpt2-medium", "gpt2-large", "bert-base-uncased", "bert-large-uncased"),
                n_idioms=None, n_wiki=1000, n_facts=None, n_knockout=30,
                knockout_ks=(1, 10, 100, 1000), knockout_max_window=5),
        Profile("offline", ("gemma-3-270m", "smollm2-135m", "qwen2.5-coder-0.5b"),
                n_idioms=None, n_wiki=1000, n_facts=None, n_knockout=30,
                knockout_ks=(10, 100), knockout_max_window=2),
        Profile("smoke", ("tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2", "tiny-bert"),
                n_idioms=40, n_wiki=24, n_facts=24, n_knockout=6,
                knockout_ks=(1, 10), knockout_max_window=2),
    )
}


def profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        ValueError: no such profile (the message lists them).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {list(PROFILES)}") from None
