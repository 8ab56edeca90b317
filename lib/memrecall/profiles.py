"""The run profiles, each defined once: which models, how many examples, which knockout grid.

``paper`` is the paper's setup (hub models; a GPU for the full knockout grid), ``offline`` the
packaged models on a CPU, ``smoke`` the tiny random models of the tests and CI.
:func:`memrecall.models.profile_models`, :func:`memrecall.pipeline.settings` and
``make reproduce`` all read :data:`PROFILES`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROFILES", "QUICK", "LensBudget", "Profile", "profile", "quick_sizes"]


@dataclass(frozen=True)
class LensBudget:
    """How the fitted lenses of notebook 06 are fitted and evaluated (:mod:`memrecall.lenses`).

    Attributes:
        fit_tokens: WikiText-2 ``valid.txt`` positions both lenses are fitted on.
        eval_tokens: WikiText-2 ``test.txt`` positions of the held-out KL (full vocabulary).
        tuned_steps: Adam steps of the tuned lens (it starts from the linear shortcut).
        tuned_rows: positions per step.
        vocab_sample: tokens drawn for each step's importance-weighted KL besides the rows' top
            tokens; ``None`` for the exact KL over the full vocabulary.
        monitor_tokens: further ``valid.txt`` positions, held out of the fit, on which the tuned
            lens's exact KL is measured during training (each layer keeps its best checkpoint).
        monitor_every: steps between those measurements.
        tuned_lr: the tuned lens's peak learning rate.
        ridge: the linear shortcut's penalty (relative to the inputs' mean variance).
        chunk_len: tokens per chunk of text (probes are shorter).
    """

    fit_tokens: int
    eval_tokens: int
    tuned_steps: int
    tuned_rows: int
    vocab_sample: int | None
    monitor_tokens: int
    monitor_every: int
    tuned_lr: float = 3e-3
    ridge: float = 1e-3
    chunk_len: int = 32


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
        lens: the budget of the fitted lenses (notebook 06).
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
    lens: LensBudget


# Every profile runs the paper's knockout design (k = 10, windows of 1-3 layers, 100 probes per
# group); the batched sweep makes it a few minutes per offline model on a CPU. The released code's
# wider grid stays available (memrecall.interventions.RELEASED_KS, RELEASED_MAX_WINDOW).
# Lenses: on a GPU, 200k tokens and the exact KL; on a CPU, 16k tokens and an importance-weighted
# vocabulary sample for training (a few minutes per lens and model); the monitor's and the
# held-out KL always exact, the held-out on 4,096 positions or more.
PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        Profile("paper", ("gpt2-medium", "gpt2-large", "bert-base-uncased", "bert-large-uncased"),
                n_idioms=None, n_wiki=1000, wiki_source="hf", n_facts=None, n_knockout=100,
                knockout_ks=(10,), knockout_max_window=3,
                lens=LensBudget(fit_tokens=200_000, eval_tokens=16_384, tuned_steps=250,
                                tuned_rows=800, vocab_sample=None, monitor_tokens=2048,
                                monitor_every=50)),
        Profile("offline", ("gemma-3-270m", "smollm2-135m", "qwen2.5-coder-0.5b"),
                n_idioms=None, n_wiki=1000, wiki_source="auto", n_facts=None, n_knockout=100,
                knockout_ks=(10,), knockout_max_window=3,
                lens=LensBudget(fit_tokens=16_384, eval_tokens=4096, tuned_steps=64,
                                tuned_rows=256, vocab_sample=4096, monitor_tokens=512,
                                monitor_every=16)),
        Profile("smoke", ("tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2", "tiny-bert"),
                n_idioms=40, n_wiki=24, wiki_source="auto", n_facts=24, n_knockout=6,
                knockout_ks=(10,), knockout_max_window=3,
                lens=LensBudget(fit_tokens=512, eval_tokens=256, tuned_steps=16,
                                tuned_rows=64, vocab_sample=None, monitor_tokens=128,
                                monitor_every=8)),
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


QUICK: dict[str, object] = {
    "n_idioms": 60, "n_wiki": 30, "n_facts": 60, "n_knockout": 10,
    "lens": LensBudget(fit_tokens=2048, eval_tokens=512, tuned_steps=16, tuned_rows=128,
                       vocab_sample=1024, monitor_tokens=256, monitor_every=8),
}
"""What the notebooks' ``quick`` parameter changes: small samples and a small lens budget, so a
first look at one model takes minutes on a CPU (its numbers decide nothing; the full profile
does)."""


def quick_sizes(profile: Profile) -> dict[str, object]:
    """The sample sizes and lens budget of a quick run of ``profile``.

    Never above the profile's own: the smoke profile stays as small as it is.
    """
    sizes: dict[str, object] = {}
    for name, small in QUICK.items():
        full = getattr(profile, name)
        if name == "lens":
            sizes[name] = small if small.fit_tokens < full.fit_tokens else full
        else:
            sizes[name] = small if full is None or small < full else full
    return sizes
