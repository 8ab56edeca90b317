"""The explorer without a browser: choose a model, type a text, get the table and the curves."""

import numpy as np
import pandas as pd
import pytest

import memrecall as mr
from memrecall.jupyter import widgets
from memrecall.lenses import LogitLens

IDIOMS = ["it's raining cats and dogs", "once in a blue moon", "play it by ear"]


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


def test_widget_typing_and_picking_update_the_picture(llama, results):
    loaded = []
    box = widgets.Explorer([llama, "tiny-gpt2"], IDIOMS, results={"tiny-llama": results},
                           loader=loads(loaded)).widget()
    ui = box.controls
    assert "memrecall-explorer" in box._dom_classes  # the container whose keys stay with it
    assert ui.search.value == "once in a blue moon"
    assert bytes(ui.image.value[:4]) == b"\x89PNG" and "memorized: tiny-llama" in ui.status.value
    assert ui.lens.layout.display == "none"  # only the logit lens: no picker

    ui.memorized_only.value = True
    assert ui.search.texts == ["once in a blue moon"]
    first = bytes(ui.image.value)
    ui.search.submit("the early bird catches the worm")  # typed, not in the list
    assert bytes(ui.image.value) != first
    assert "predicted: tiny-llama" in ui.status.value and "memorized" not in ui.status.value

    ui.model.value = "tiny-gpt2"
    assert loaded == ["tiny-gpt2"] and "predicted: tiny-gpt2" in ui.status.value
    assert ui.memorized_only.layout.display == "none" and not ui.memorized_only.value
    assert ui.search.texts == IDIOMS


def test_widget_one_word_says_what_to_do_and_clears_the_picture(llama):
    ui = widgets.Explorer([llama], IDIOMS).widget().controls
    assert ui.image.value and ui.view is not None
    ui.search.submit("moon")
    assert "two words or more" in ui.status.value and "row" not in ui.status.value
    assert not ui.image.value and ui.view is None and ui.export_button.disabled


def test_widget_shows_loading_before_a_model_loads_on_demand(llama):
    seen = []

    def loader(name):
        seen.append(ui.status.value)
        return mr.load(name, device="cpu")

    ui = widgets.Explorer([llama, "tiny-gpt2"], IDIOMS, loader=loader).widget().controls
    ui.model.value = "tiny-gpt2"
    assert len(seen) == 1 and "loading tiny-gpt2" in seen[0]


def test_search_box_ranks_suggestions_and_enter_picks_one(llama):
    texts = ["a landspill at dawn", "spill the beans", "cry over spilled milk", "spilling over"]
    ui = widgets.Explorer([llama], texts).widget().controls
    ui.search.query = "spill"
    assert ui.search.suggestions == ["spill the beans", "spilling over",  # prefix first
                                     "cry over spilled milk",  # then a later word's start
                                     "a landspill at dawn"]  # then inside a word
    assert ui.search.count == "4 idioms match"
    assert ui.search.submit("spill the") == "spill the beans"  # a fragment: not prompt+target
    assert ui.view.text == "spill the beans" and "memorized" in ui.status.value
    assert ui.search.suggestions == []  # Enter closes the list
    assert ui.search.submit("spill", highlighted="spilling over") == "spilling over"
    assert ui.view.text == "spilling over"


def test_widget_compare_top_k_track_and_export(llama, tmp_path):
    ui = widgets.Explorer([llama, "tiny-gpt2"], IDIOMS).widget(tmp_path / "fig",
                                                               tmp_path / "res").controls
    ui.top_k.value = 3
    assert ui.view.top_ids.shape == (llama.n_layers, 3)
    ui.track.value = " moon"
    assert ui.view.track_label is not None and "track_rank" in ui.view.curves
    ui.compare_model.value = "tiny-gpt2"
    assert [v.model for v in ui.view.views] == ["tiny-llama", "tiny-gpt2"]
    assert all(v.track_label for v in ui.view.views)
    written = ui.export()
    assert [p.suffix for p in written] == [".png", ".pdf", ".csv"]
    assert written[0].parent == tmp_path / "fig" and written[2].parent == tmp_path / "res"
    assert written[0].read_bytes()[:4] == b"\x89PNG" and written[1].read_bytes()[:4] == b"%PDF"
    table = pd.read_csv(written[2])
    assert set(table["model"]) == {"tiny-llama", "tiny-gpt2"}
    assert len(table) == sum(v.n_layers for v in ui.view.views)
    assert all(str(p) in ui.saved.value for p in written)
    assert not list((tmp_path / "fig").glob(".*.tmp"))  # atomic: no temp files left


def test_widget_export_hidden_without_folders(llama):
    box = widgets.idiom_explorer([llama], IDIOMS)
    export_row = box.children[3]
    assert box.controls.export_button in export_row.children
    assert export_row.layout.display == "none" and box.controls.export() == []


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
