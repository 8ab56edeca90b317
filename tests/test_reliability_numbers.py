"""Reliability, second pass: silent wrong numbers.

NaN and inf are refused (weights, lenses, hidden states, logits) instead of reading as rank 0;
model folders with missing or surplus tensors are refused instead of loading random weights; the
tokenizer is part of every cache key; a converted model's manifest must vouch for every file.
"""

from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file, save_file

import memrecall as mr
from memrecall import interventions as iv
from memrecall.lenses import layer_logits
from memrecall.lenses.affine import load_lens
from memrecall.lenses.shortcut import LinearShortcut
from memrecall.models.converted import write_manifest
from memrecall.models.finite import NonFiniteError
from memrecall.models.tiny import build_tiny

PROMPTS = ["break the ice", "the cat sat on the mat and", "once upon a"]
POISON = 1  # the prompt whose hidden states are made infinite


# --------------------------------------------------------------------------- NaN and inf


@contextmanager
def infinite_after_block(lm, block: int, prompt: str):
    """Block ``block``'s output (0-based) set to inf in every batch row holding ``prompt``."""
    marker = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]
    rows = {}

    def embedded(module, args, kwargs, output):
        ids = args[0] if args else kwargs["input_ids"]
        rows["poison"] = (ids == marker).any(1)

    def block_out(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        poison = rows["poison"]
        if len(poison) == len(hidden):  # a resumed forward of some rows: leave it
            hidden[poison] = torch.inf

    embedding = lm.model.get_input_embeddings()
    handles = [embedding.register_forward_hook(embedded, with_kwargs=True),
               lm.arch.blocks[block].register_forward_hook(block_out)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def test_a_nan_weight_is_refused_by_wrap_and_load_naming_the_tensor(tmp_path):
    model, tokenizer = build_tiny("tiny-llama")
    with torch.no_grad():
        model.model.layers[2].mlp.down_proj.weight[3, 5] = torch.nan
    with pytest.raises(NonFiniteError, match=r"model\.layers\.2\.mlp\.down_proj\.weight.*NaN"):
        mr.wrap(model, tokenizer, name="broken")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(NonFiniteError, match=r"model\.layers\.2\.mlp\.down_proj\.weight"):
        mr.load(tmp_path / "m", device="cpu")


def test_an_inf_hidden_state_stops_project_naming_model_layer_and_prompt():
    lm = mr.load("tiny-llama", device="cpu")
    clean = mr.project(lm, PROMPTS)
    with infinite_after_block(lm, 2, PROMPTS[POISON]), pytest.raises(
            NonFiniteError, match=r"tiny-llama \(float32\): NaN normed hidden state at layer 3 "
                                  r"\(1-based, of 4; 2 of 4 layers affected\), first at "
                                  r"prompt 1 \('the cat"):
        mr.project(lm, PROMPTS, batch_size=2)
    with infinite_after_block(lm, 2, PROMPTS[POISON]), pytest.raises(
            NonFiniteError, match=r"layer 3 \(1-based.*prompt 0 \('the cat"):
        layer_logits(lm, PROMPTS[POISON])
    # the hooks are gone: the same numbers as before
    again = mr.project(lm, PROMPTS)
    assert all((a == b).all() for a, b in zip(again["pred_rank"], clean["pred_rank"]))


def test_infinite_logits_stop_project_even_when_the_normed_states_are_finite():
    lm = mr.load("tiny-llama", device="cpu")
    with torch.no_grad():
        lm.arch.unembed_weight[7] = 3e38  # finite weights; token 7's logit overflows
    with pytest.raises(NonFiniteError, match=r"(inf|NaN) logit at layer 1 \(1-based, of 4; "
                                             r"\d of 4 layers affected\), first at prompt \d"):
        mr.project(lm, PROMPTS)


def test_float16_overflow_suggests_float32_or_bfloat16():
    lm = mr.load("tiny-llama", device="cpu", dtype="float16")
    with infinite_after_block(lm, 0, PROMPTS[POISON]), pytest.raises(
            NonFiniteError, match=r"\(float16\).*layer 1 .*float16 overflows.*Gemma.*"
                                  r"'float32' or 'bfloat16'"):
        mr.project(lm, PROMPTS)


def test_an_inf_hidden_state_stops_the_knockout_sweep_naming_the_prompt():
    lm = mr.load("tiny-llama", device="cpu")
    with infinite_after_block(lm, 1, PROMPTS[POISON]), pytest.raises(
            NonFiniteError, match=r"tiny-llama \(float32\): NaN normed hidden state at layer 4 "
                                  r"\(1-based.*prompt 1 \('the cat"):
        iv.knockout_sweep(lm, PROMPTS, ks=(2,), max_window=1, progress=False)


@pytest.mark.parametrize("resume", [True, False])
def test_infinite_logits_after_a_knockout_stop_the_sweep(monkeypatch, resume):
    lm = mr.load("tiny-gpt2", device="cpu")
    real = iv.rows.HeadQueue.flush

    def overflowing(self):
        for _, _, normed in self.pending:
            normed[0] = torch.inf
        real(self)

    monkeypatch.setattr(iv.rows.HeadQueue, "flush", overflowing)
    with pytest.raises(NonFiniteError, match=r"logit at layer 4 \(1-based.*after a knockout.*"
                                             r"prompt \d \('"):
        iv.knockout_sweep(lm, PROMPTS, ks=(2,), max_window=1, progress=False, resume=resume)


def test_a_lens_file_with_a_nan_is_refused_naming_the_file(tmp_path):
    lm = mr.load("tiny-llama", device="cpu")
    d = lm.arch.unembed_weight.shape[1]
    meta = {"model": lm.name, "revision": lm.revision, "n_layers": lm.n_layers, "d_model": d}
    path = LinearShortcut(torch.zeros(lm.n_layers - 1, d, d), torch.zeros(lm.n_layers - 1, d),
                      meta).save(tmp_path / "lens")
    assert load_lens(path, lm).n_layers == lm.n_layers
    tensors = load_file(str(path))
    tensors["bias"][1, 0] = torch.nan
    save_file(tensors, str(path))
    with pytest.raises(NonFiniteError, match=rf"{path}: the lens's bias .*layer 2 \(1-based\)"):
        load_lens(path, lm)
    with pytest.raises(NonFiniteError, match="bias"):
        LinearShortcut(tensors["weight"], tensors["bias"], meta)


# --------------------------------------------------------------------------- tokenizer in the key


def _key_and_path(lm, tmp_path):
    from memrecall.cache import cache_path, result_key

    key = result_key(lm, "inputs", "projection", batch=1)
    return key, cache_path(tmp_path, key)


def test_the_tokenizer_is_part_of_every_cache_key(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    model, tokenizer = build_tiny("tiny-llama")
    plain = mr.wrap(model, tokenizer, name="m")
    same = mr.wrap(model, build_tiny("tiny-llama")[1], name="m")
    assert _key_and_path(plain, tmp_path) == _key_and_path(same, tmp_path)

    bos = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 1
    bos_token = tokenizer.convert_ids_to_tokens(bos_id)
    bos.post_processor = TemplateProcessing(single=f"{bos_token} $A", pair=f"{bos_token} $A $B",
                                            special_tokens=[(bos_token, bos_id)])
    with_bos = PreTrainedTokenizerFast(tokenizer_object=bos, **tokenizer.special_tokens_map)
    assert with_bos("a b")["input_ids"] != tokenizer("a b")["input_ids"]
    other = mr.wrap(model, with_bos, name="m")
    assert other.weights == plain.weights  # the same weights...
    key, path = _key_and_path(other, tmp_path)
    plain_key, plain_path = _key_and_path(plain, tmp_path)
    assert key["tokenizer"] != plain_key["tokenizer"]  # ... another tokenizer, another key
    assert key != plain_key and path != plain_path


def test_an_edited_tokenizer_json_changes_the_key(tmp_path):
    import json

    model, tokenizer = build_tiny("tiny-gpt2")
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    before = mr.load(folder, device="cpu").provenance()
    assert mr.load(folder, device="cpu").provenance() == before
    raw = json.loads((folder / "tokenizer.json").read_text())
    vocab = raw["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[10:12]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (folder / "tokenizer.json").write_text(json.dumps(raw))
    after = mr.load(folder, device="cpu").provenance()
    assert after["weights"] == before["weights"] and after["tokenizer"] != before["tokenizer"]


# --------------------------------------------------------------------------- incomplete folders


@pytest.fixture
def saved_llama(tmp_path):
    model, tokenizer = build_tiny("tiny-llama")
    folder = tmp_path / "llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, mr.wrap(model, tokenizer, name="tiny-llama")


def test_an_intact_folder_loads_with_the_same_ranks(saved_llama):
    folder, memory = saved_llama
    loaded = mr.load(folder, device="cpu")
    a, b = mr.project(loaded, PROMPTS), mr.project(memory, PROMPTS)
    assert (a["pred_token"] == b["pred_token"]).all()
    assert all((x == y).all() for x, y in zip(a["pred_rank"], b["pred_rank"]))


def test_a_tied_head_is_not_taken_for_a_missing_tensor(tmp_path):
    model, tokenizer = build_tiny("tiny-gpt2")  # lm_head tied to the embeddings, not saved
    model.save_pretrained(tmp_path / "g")
    tokenizer.save_pretrained(tmp_path / "g")
    assert mr.load(tmp_path / "g", device="cpu").n_layers == 4


def test_a_folder_missing_a_layers_tensors_is_refused(saved_llama):
    from memrecall.models import ModelFolderError

    folder, _ = saved_llama
    weights = folder / "model.safetensors"
    tensors = {k: v for k, v in load_file(str(weights)).items() if ".layers.1." not in k}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelFolderError, match=rf"{folder}: .* 9 missing \(would be initialised "
                                               r"at random\): model\.layers\.1\."):
        mr.load(folder, device="cpu")


def test_a_config_with_more_layers_than_the_weights_is_refused(saved_llama):
    import json

    from memrecall.models import ModelFolderError

    folder, _ = saved_llama
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 99
    config.pop("layer_types", None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"\d+ missing .*model\.layers\.(4|10)\..*"
                                               r"num_hidden_layers"):
        mr.load(folder, device="cpu")


def test_surplus_tensors_are_refused(saved_llama):
    from memrecall.models import ModelFolderError

    folder, _ = saved_llama
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["model.layers.7.mlp.up_proj.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelFolderError, match=r"1 unexpected .*model\.layers\.7\.mlp\.up_proj"):
        mr.load(folder, device="cpu")


def test_a_mis_shaped_tensor_is_refused(saved_llama):
    from memrecall.models import ModelFolderError

    folder, _ = saved_llama
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    name = "model.layers.1.mlp.up_proj.weight"
    rows, columns = tensors[name].shape
    tensors[name] = torch.zeros(rows + 1, columns)  # one row too many: a checkpoint of another size
    save_file(tensors, str(weights), metadata={"format": "pt"})
    # transformers refuses the size mismatch itself (its load report names the tensor); either
    # way the load fails with the folder named, never with the tensor re-initialised at random
    with pytest.raises(ModelFolderError, match=r"llama.*(wrong shape|mismatched)"):
        mr.load(folder, device="cpu")


# --------------------------------------------------------------------------- converted manifests


def _converted(tmp_path):
    from memrecall.models import loading

    calls = []

    def convert():
        calls.append(1)
        return build_tiny("tiny-gpt2")

    folder = tmp_path / "tiny-gpt2-v1"
    model, _ = loading.converted_model(folder, convert, torch.float32)
    with torch.inference_mode():
        expected = model(torch.tensor([[1, 2, 3, 4]])).logits
    return folder, convert, calls, expected


def _reconverts(folder, convert, calls, expected, match):
    from memrecall._io import CacheWarning
    from memrecall.models import loading

    before = len(calls)
    with pytest.warns(CacheWarning, match=match):
        model, _ = loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == before + 1
    with torch.inference_mode():
        torch.testing.assert_close(model(torch.tensor([[1, 2, 3, 4]])).logits, expected)


def _zero_some_weights(folder):
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = torch.zeros_like(tensors[name])
    save_file(tensors, str(weights), metadata={"format": "pt"})


def test_an_empty_manifest_vouches_for_nothing(tmp_path):
    import json

    from memrecall.models import loading

    folder, convert, calls, expected = _converted(tmp_path)
    _zero_some_weights(folder)
    (folder / loading.MANIFEST).write_text(json.dumps({"files": {}}))
    _reconverts(folder, convert, calls, expected, r"reconverting.*lists no files")


def test_a_manifest_missing_a_file_or_with_a_malformed_entry_is_refused(tmp_path):
    import json

    from memrecall.models import loading

    folder, convert, calls, expected = _converted(tmp_path)
    manifest = folder / loading.MANIFEST
    written = json.loads(manifest.read_text())
    files = dict(written["files"])
    del files["model.safetensors"]  # tampered weights, no longer listed
    _zero_some_weights(folder)
    manifest.write_text(json.dumps({"files": files}))
    _reconverts(folder, convert, calls, expected, r"model\.safetensors is not in")

    written = json.loads(manifest.read_text())
    written["files"]["config.json"] = {"bytes": "many"}
    manifest.write_text(json.dumps(written))
    _reconverts(folder, convert, calls, expected, r"malformed entry for 'config\.json'")

    (folder / "extra.safetensors").write_bytes(b"")  # a file nobody vouches for
    _reconverts(folder, convert, calls, expected, r"extra\.safetensors is not in")


def test_a_converted_folder_missing_tensors_is_reconverted(tmp_path):

    folder, convert, calls, expected = _converted(tmp_path)
    weights = folder / "model.safetensors"
    tensors = {k: v for k, v in load_file(str(weights)).items() if ".h.1." not in k}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    write_manifest(folder)  # a manifest that vouches for the incomplete weights
    _reconverts(folder, convert, calls, expected, r"missing \(would be initialised at random\)")
