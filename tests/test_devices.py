"""Devices: CUDA memory budgets and out-of-memory retries (faked on CPU, real under ``cuda``),
device maps through accelerate (disk offload on CPU; a GPU/CPU split under ``cuda``)."""

import weakref

import numpy as np
import pytest
import torch
from conftest import assert_tokens_match

import memrecall as mr
from memrecall import forward, interventions
from memrecall.forward.batching import activation_bytes, activation_token_budget, halve_on_oom
from memrecall.lenses.projection import reference_logits
from memrecall.models.placement import OffloadedHeadError

GIB = 2**30


def fake_cuda_memory(monkeypatch, free: dict[int, int]) -> list:
    """``torch.cuda.mem_get_info`` answering ``free[index]``; returns the devices asked."""
    asked = []

    def mem_get_info(device):
        asked.append(torch.device(device))
        return free[torch.device(device).index or 0], 80 * GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    return asked


def test_cuda_budget_is_a_share_of_the_free_memory(monkeypatch):
    asked = fake_cuda_memory(monkeypatch, {0: 10 * GIB, 1: 100 * 2**20})
    assert activation_bytes(torch.device("cuda", 0)) == int(10 * GIB
                                                           * forward.CUDA_FREE_FRACTION)
    assert activation_bytes("cuda:1") == forward.MIN_ACTIVATION_BYTES  # nearly full card
    assert asked == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert activation_bytes("cpu") == forward.ACTIVATION_BYTES["cpu"]
    assert len(asked) == 2  # the CPU budget never asks CUDA


def test_token_budget_takes_the_tightest_device_and_the_dtype(monkeypatch):
    lm = mr.load("tiny-llama", device="cpu")
    half = mr.load("tiny-llama", device="cpu", dtype="bfloat16")
    assert activation_token_budget(half) == 2 * activation_token_budget(lm)
    fake_cuda_memory(monkeypatch, {0: 40 * GIB, 1: 2 * GIB})
    monkeypatch.setattr(mr.LM, "devices", property(
        lambda self: [torch.device("cuda", 0), torch.device("cuda", 1)]))
    tight = activation_token_budget(lm)
    monkeypatch.setattr(mr.LM, "devices", property(lambda self: [torch.device("cuda", 0)]))
    assert activation_token_budget(lm) == pytest.approx(20 * tight, rel=1e-3)


def halves(item: list) -> list[list]:
    return [item[: len(item) // 2], item[len(item) // 2:]] if len(item) > 1 else []


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_oom_retry_empties_cudas_cache_after_freeing_the_failed_batch(monkeypatch, device):
    attempts = []

    def fn(item):
        attempts.append(weakref.ref(activations := torch.ones(len(item))))
        if len(item) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return activations.sum()

    emptied = []  # at each call: are the failed attempts' tensors already freed?
    monkeypatch.setattr(torch.cuda, "empty_cache",
                        lambda: emptied.append(all(ref() is None for ref in attempts)))
    done = halve_on_oom([[1, 2, 3, 4, 5]], fn, halves, device)
    assert [item for item, _ in done] == [[1, 2], [3], [4, 5]]
    assert emptied == ([True, True] if device == "cuda" else [])


def test_device_map_auto_on_a_cpu_only_machine():
    lm = mr.load("tiny-gpt2", device_map="auto")
    assert lm.devices == [torch.device("cpu")]
    plain = mr.load("tiny-gpt2", device="cpu")
    probes = mr.make_probes(["break the ice", "the early bird catches the worm"], plain)
    # the same model on the same device, the same batches and kernels: exactly equal
    np.testing.assert_array_equal(np.stack(mr.project(lm, probes).target_rank),
                                  np.stack(mr.project(plain, probes).target_rank))


def block_map(lm: mr.LM, block_device, rest="cpu") -> dict:
    """A device map placing block ``i`` on ``block_device(i)`` and every other module on
    ``rest`` (the blocks' parents are split into their children)."""
    names = {id(module): name for name, module in lm.model.named_modules()}
    blocks = {names[id(block)]: i for i, block in enumerate(lm.arch.blocks)}
    parents = {name.rsplit(".", k)[0] for name in blocks for k in range(1, name.count(".") + 1)}
    mapping = {}

    def visit(prefix: str, module: torch.nn.Module) -> None:
        for child, sub in module.named_children():
            full = f"{prefix}.{child}" if prefix else child
            if full in blocks:
                mapping[full] = block_device(blocks[full])
            elif full in parents:
                visit(full, sub)
            else:
                mapping[full] = rest

    visit("", lm.model)
    return mapping


@pytest.fixture(scope="module")
def idiom_probes(data_dir):
    return mr.load_idiomem()["idiom"].astype(str).tolist()[:24]


@pytest.mark.parametrize("name", mr.profile_models("smoke"))
def test_blocks_offloaded_to_disk_give_the_same_lens(name, tmp_path, idiom_probes):
    plain = mr.load(name, device="cpu")
    mapping = block_map(plain, lambda i: "disk" if i % 2 else "cpu")
    lm = mr.load(name, device="cpu", device_map=mapping, offload_folder=tmp_path)
    assert any(p.device.type == "meta" for p in lm.arch.blocks[1].parameters())  # offloaded
    assert lm.devices == [torch.device("cpu")]
    probes = mr.make_probes(idiom_probes, plain)
    ours, theirs = mr.project(lm, probes), mr.project(plain, probes)
    # the same weights (offloaded bit for bit), batches and CPU kernels: exactly equal
    np.testing.assert_array_equal(ours.pred_token, theirs.pred_token)
    for column in ("pred_rank", "target_rank"):
        np.testing.assert_array_equal(np.stack(ours[column]), np.stack(theirs[column]))
    np.testing.assert_allclose(np.stack(ours.target_prob), np.stack(theirs.target_prob),
                               atol=1e-6)
    with pytest.raises(ValueError, match="offloaded"):  # the interventions read MLP weights
        interventions.top_neurons(lm, probes[:2], k=3)


def test_a_map_that_offloads_the_unembedding_fails_loudly(tmp_path):
    plain = mr.load("tiny-llama", device="cpu")
    mapping = block_map(plain, lambda i: "cpu") | {"lm_head": "disk"}
    with pytest.raises(OffloadedHeadError, match="lm_head"):
        mr.load("tiny-llama", device="cpu", device_map=mapping, offload_folder=tmp_path)


# --- on a GPU -----------------------------------------------------------------------------------

@pytest.mark.cuda
def test_cuda_budget_and_a_real_out_of_memory_retry():
    device = torch.device("cuda")
    free, total = torch.cuda.mem_get_info(device)
    assert forward.MIN_ACTIVATION_BYTES <= activation_bytes(device) <= free

    def fn(item):  # asks for twice the card when the item is large
        size = total * 2 if len(item) > 2 else 1024
        return torch.empty(size, dtype=torch.uint8, device=device).numel()

    done = halve_on_oom([[1, 2, 3, 4]], fn, halves, device)
    assert [item for item, _ in done] == [[1, 2], [3, 4]]


@pytest.mark.cuda
@pytest.mark.parametrize("name", mr.profile_models("smoke"))
def test_project_on_cuda_matches_the_cpu(name, idiom_probes):
    cpu, gpu = mr.load(name, device="cpu"), mr.load(name, device="cuda")
    probes = mr.make_probes(idiom_probes, cpu)
    ours, theirs = mr.project(gpu, probes), mr.project(cpu, probes)
    assert (ours.pred_token == theirs.pred_token).mean() >= 0.95
    np.testing.assert_allclose(np.stack(ours.target_prob), np.stack(theirs.target_prob),
                               atol=1e-4)
    assert (np.stack(ours.target_rank) == np.stack(theirs.target_rank)).mean() >= 0.95


@pytest.mark.cuda
@pytest.mark.parametrize("name", mr.profile_models("smoke"))
def test_blocks_split_between_cuda_and_cpu(name, idiom_probes):
    plain = mr.load(name, device="cuda")
    mapping = block_map(plain, lambda i: "cpu" if i % 2 else 0, rest=0)
    lm = mr.load(name, device_map=mapping)
    assert lm.device.type == "cuda"
    probes = mr.make_probes(idiom_probes, plain)
    ours, theirs = mr.project(lm, probes), mr.project(plain, probes)
    # CPU kernels for half the blocks against CUDA's: equal up to float ties (conftest)
    logits = torch.stack([reference_logits(plain, prompt)[-1] for prompt in probes.prompt])
    assert_tokens_match(ours.pred_token.to_numpy(), theirs.pred_token.to_numpy(),
                        logits.float())
    np.testing.assert_allclose(np.stack(ours.target_prob), np.stack(theirs.target_prob),
                               atol=1e-5)


@pytest.mark.cuda
def test_knockout_sweep_on_cuda_matches_the_cpu(idiom_probes):
    cpu, gpu = mr.load("tiny-llama", device="cpu"), mr.load("tiny-llama", device="cuda")
    probes = mr.make_probes(idiom_probes[:8], cpu)
    sweep = dict(ks=(2, 8), max_window=2, controls=("top", "random"), per_probe=True,
                 progress=False)
    ours = interventions.knockout_sweep(gpu, probes, **sweep)
    theirs = interventions.knockout_sweep(cpu, probes, **sweep)
    assert (ours["changed"].to_numpy() == theirs["changed"].to_numpy()).mean() >= 0.95
