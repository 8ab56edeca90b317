"""The explorer without a browser: choose a model, type a text, get the table and the curves."""

import numpy as np
import pandas as pd
import pytest

import memrecall as mr
from memrecall.jupyter import widgets
from memrecall.lenses import LogitLens

IDIOMS = ["it's raining cats and dogs", "once in a blue moon", "play it by ear"]


@pytest.fixture(scope="module")
def llama():
    return mr.load("tiny-llama", device="cpu")


@pytest.fixture(scope="module")
def results(llama):
    res = mr.project(llama, mr.make_probes(IDIOMS, llama))
    return res.assign(is_memorized=[False, True, False])  # pretend: one memorized idiom


def loads(log):
    def loader(name):
        log.append(name)
        return mr.load(name, device="cpu")
    return loader


def test_explorer_choose_a_model_type_a_text_get_table_and_curves(llama, results):
    loaded = []
    explorer = widgets.Explorer([llama, "tiny-gpt2"], IDIOMS, results={"tiny-llama": results},
                                k=4, loader=loads(loaded))
    assert explorer.models == ["tiny-llama", "tiny-gpt2"]
    assert explorer.default_model == "tiny-llama" and not loaded  # given loaded: no reload
    view = explorer.show("once in a blue moon")
    assert view.model == "tiny-llama" and view.lens == LogitLens.label
    assert view.table.shape == (llama.n_layers, 4)
    assert list(view.curves.columns) == ["pred_rank", "pred_prob", "target_rank", "target_prob"]

    other = explorer.show("a text that is in no idiom list", model="tiny-gpt2")  # any text
    assert other.model == "tiny-gpt2" and loaded == ["tiny-gpt2"]
    assert other.target == "list" and other.table.shape[1] == 4
    explorer.show("over the moon", model="tiny-gpt2")
    assert loaded == ["tiny-gpt2"]  # kept while it is the one in use


def test_explorer_keeps_one_model_loaded_by_name():
    loaded = []
    explorer = widgets.Explorer(["tiny-gpt2", "tiny-bert"], IDIOMS, loader=loads(loaded))
    first = explorer.model("tiny-gpt2")
    assert explorer.model("tiny-gpt2") is first
    explorer.model("tiny-bert")
    explorer.model("tiny-gpt2")
    assert loaded == ["tiny-gpt2", "tiny-bert", "tiny-gpt2"]


def test_explorer_memorized_filter_and_first_text(llama, results):
    explorer = widgets.Explorer([llama], IDIOMS, results={"tiny-llama": results})
    assert explorer.options("tiny-llama") == IDIOMS
    assert explorer.options("tiny-llama", memorized_only=True) == ["once in a blue moon"]
    assert explorer.first_text("tiny-llama") == "once in a blue moon"
    bare = widgets.Explorer([llama], IDIOMS)
    assert bare.first_text("tiny-llama") == IDIOMS[0]
    with pytest.raises(KeyError, match="no results"):
        bare.memorized("tiny-llama")


def test_explorer_lenses_default_to_the_logit_lens_and_accept_fitted_ones(llama):
    class Scale:
        def check(self, lm):
            pass

        def transform(self, hidden):
            out = hidden.clone()
            out[:-1] *= 0.25
            return out

    explorer = widgets.Explorer([llama, "tiny-gpt2"], IDIOMS,
                                lenses={"tiny-llama": {"scaled": Scale()}})
    assert explorer.lens_names("tiny-llama") == [LogitLens.label, "scaled"]
    assert explorer.lens_names("tiny-gpt2") == [LogitLens.label]
    plain, scaled = explorer.show(IDIOMS[0]), explorer.show(IDIOMS[0], lens="scaled")
    assert scaled.lens == "scaled"
    assert not np.allclose(plain.curves["pred_prob"].iloc[0], scaled.curves["pred_prob"].iloc[0])
    with pytest.raises(KeyError, match="no lens"):
        explorer.show(IDIOMS[0], model="tiny-gpt2", lens="scaled")
    with pytest.raises(ValueError, match="always offered"):
        widgets.Explorer([llama], lenses={"tiny-llama": {LogitLens.label: Scale()}})


def test_explorer_rejects_unknown_and_duplicate_models(llama):
    with pytest.raises(ValueError, match="twice"):
        widgets.Explorer([llama, "tiny-llama"])
    with pytest.raises(KeyError, match="unknown model"):
        widgets.Explorer([llama]).show(IDIOMS[0], model="gpt2")


def test_widget_typing_and_picking_update_the_picture(llama, results, tmp_path):
    loaded = []
    box = widgets.Explorer([llama, "tiny-gpt2"], IDIOMS, results={"tiny-llama": results},
                           loader=loads(loaded), figures_dir=tmp_path / "f",
                           results_dir=tmp_path / "r").widget()
    pickers, combo, status, frame, saved = box.children
    model, lens, memorized_only, top_k, export = pickers.children
    [image] = frame.children
    assert widgets.KEYS_CLASS in box._dom_classes  # its keys are kept from the notebook
    assert frame.layout.overflow == "auto" and frame.layout.max_height  # tall pictures scroll
    assert combo.options == tuple(IDIOMS) and combo.value == "once in a blue moon"
    assert not combo.ensure_option and not combo.continuous_update  # Enter shows typed text
    assert bytes(image.value[:4]) == b"\x89PNG" and "memorized: tiny-llama" in status.value
    assert lens.layout.display == "none"  # only the logit lens: no picker

    memorized_only.value = True
    assert combo.options == ("once in a blue moon",)
    first = bytes(image.value)
    combo.value = "the early bird catches the worm"  # typed, not in the list
    assert bytes(image.value) != first and "predicted: tiny-llama" in status.value
    assert "memorized" not in status.value  # not an IdioMem idiom: no memorization verdict

    top_k.value = 2
    assert bytes(image.value) != first
    export.click()
    written = [line for line in saved.value.split("<code>")[1:]]
    assert len(written) == 3 and all((tmp_path / sub).is_dir() for sub in ("f", "r"))

    model.value = "tiny-gpt2"
    assert loaded == ["tiny-gpt2"] and "predicted: tiny-gpt2" in status.value
    assert saved.value == ""  # a new picture: the last export's paths are gone
    assert memorized_only.layout.display == "none" and not memorized_only.value
    assert combo.options == tuple(IDIOMS)

    combo.value = "moon"
    assert "Cannot read this text" in status.value and "two words or more" in status.value
    assert "row 0" not in status.value and image.value == b""  # no stale picture under it


def test_export_writes_the_picture_and_its_table_whole(llama, tmp_path):
    explorer = widgets.Explorer([llama], IDIOMS, k=3, figures_dir=tmp_path / "figures",
                                results_dir=tmp_path / "results")
    view = explorer.show("play it by ear")
    png, pdf, csv = explorer.export(view)
    assert png.parent == pdf.parent == tmp_path / "figures" and csv.parent == tmp_path / "results"
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:5] == b"%PDF-"
    table = pd.read_csv(csv)
    assert list(table["layer"]) == list(range(1, llama.n_layers + 1))
    assert {"pred_rank", "target_prob", "top1_token", "top3_prob"} <= set(table.columns)
    np.testing.assert_allclose(table["pred_prob"], view.curves["pred_prob"], rtol=1e-6)
    assert not list(tmp_path.rglob("*.tmp"))  # no temp file left behind


def test_memorized_is_said_only_of_the_datasets_texts(llama):
    explorer = widgets.Explorer([llama], IDIOMS)
    assert explorer.show("once in a blue moon").verdict in ("memorized", "not memorized")
    other = explorer.show("the cat sat on the mat")
    assert other.verdict in ("predicted", "not predicted") and not other.in_dataset
    assert "memorized" not in other.title


def test_idiom_explorer_not_interactive_builds_nothing(llama):
    loaded = []
    note = widgets.idiom_explorer(["tiny-gpt2"], IDIOMS, interactive=False, loader=loads(loaded))
    assert repr(note) == widgets.BATCH_NOTE and not loaded  # shown as is, no model loaded
    assert "rendered copy" in widgets.BATCH_NOTE
    with pytest.raises(ValueError, match="no models"):
        widgets.idiom_explorer([], IDIOMS, interactive=False)


def test_example_trajectories_memorized_first(llama, results):
    views = widgets.example_trajectories(llama, results, n_memorized=1, n_other=1, k=2)
    assert [v.text for v in views] == ["once in a blue moon", IDIOMS[0]]
    none_memorized = results.assign(is_memorized=False)
    assert len(widgets.example_trajectories(llama, none_memorized, n_memorized=2)) == 1
    assert isinstance(views[0].table, pd.DataFrame)
