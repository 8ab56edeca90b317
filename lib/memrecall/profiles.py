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
        n_wiki: Wikipedia control texts (length-matched to IdioMem).
        wiki_source: where they come from (:func:`memrecall.data.load_wiki`'s ``source``):
            ``"auto"`` (the pinned WikiText-2 files, the hub if none) or ``"hf"`` (WikiText-103
            from the hub, as the paper; needs the network).
        n_facts: known facts probed.
        n_knockout: probes per group in the knockout sweep (the paper: 100 memorized idioms;
            we add 100 non-memorized idioms and 100 Wikipedia prompts); seeded, a smaller group
            whole.
        knockout_ks: dominant neurons per layer (the paper: 10; its released code also 1, 100
            and 1000).
        knockout_max_window: longest window of consecutive layers knocked out together (the
            paper: 3; its released code up to 5).
    """

    name: str
    models: tuple[str, ...]
    n_idioms: int | None
    n_wiki: int
    wiki_source: str
    n_facts: int | None
    n_knockout: int
    knockout_ks: tuple[int, ...]
    knockout_max_window: int


# Every profile runs the paper's knockout design (k = 10, windows of 1-3 layers, 100 probes per
# group); the batched sweep makes it a few minutes per offline model on a CPU. The released code's
# wider grid stays available (memrecall.interventions.RELEASED_KS, RELEASED_MAX_WINDOW).
PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        Profile("paper", ("gpt2-medium", "gpt2-large", "bert-base-uncased", "bert-large-uncased"),
                n_idioms=None, n_wiki=1000, wiki_source="hf", n_facts=None, n_knockout=100,
                knockout_ks=(10,), knockout_max_window=3),
        Profile("offline", ("gemma-3-270m", "smollm2-135m"),
                n_idioms=None, n_wiki=1000, wiki_source="auto", n_facts=None, n_knockout=100,
                knockout_ks=(10,), knockout_max_window=3),
        Profile("smoke", ("tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-bert"),
                n_idioms=40, n_wiki=24, wiki_source="auto", n_facts=24, n_knockout=6,
                knockout_ks=(10,), knockout_max_window=3),
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
