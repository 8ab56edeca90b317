"""The paper's numbers shipped with the package (memrecall.data.paper)."""

import json
from importlib import resources

import numpy as np
import pytest

from memrecall.data import paper


def test_reference_file_is_package_data_with_citation():
    raw = resources.files("memrecall").joinpath("data", paper.REFERENCE_FILE)
    data = json.loads(raw.read_text("utf-8"))
    assert "Haviv" in data["source"] and "2210.03588" in data["source"]
    assert "Haviv" in paper.CITATION
    assert "digitized" in paper.__doc__


def test_reference_is_a_fresh_copy():
    first = paper.reference()
    first["table3_memorized"].clear()
    assert paper.reference()["table3_memorized"]


def test_table3_as_printed():
    table = paper.table3().set_index("model")
    assert list(table.index) == list(paper.PAPER_MODELS)
    assert table.loc["gpt2-medium", "memorized"] == 364
    assert (table["n"] == 814).all()
    assert table.loc["bert-base-uncased", "memorized_pct"] == pytest.approx(28.3)


def test_table4_and_table5():
    t4 = paper.table4().set_index("model")
    assert t4.loc["bert-large-uncased", "r"] == pytest.approx(0.15)
    t5 = paper.table5()
    assert list(t5.columns) == ["model", "features", "accuracy_mean", "accuracy_sd"]
    assert tuple(dict.fromkeys(t5["features"])) == paper.TABLE5_FEATURES
    assert len(t5) == 8 * 4
    row = t5[(t5["model"] == "gpt2-medium") & (t5["features"] == "probability (all layers)")]
    assert row["accuracy_mean"].item() == pytest.approx(84.6)


def test_figure2_curves_per_model_group_layer():
    curves = paper.figure2()
    assert set(curves["group"]) == {"memorized", "non-memorized", "wikipedia"}
    for model, part in curves.groupby("model"):
        n = paper.n_layers(model)
        assert len(part) == 3 * n
        last = part[part["layer"] == n]
        assert np.allclose(last["depth"], 1.0) and np.allclose(last["rank"], 0.0)
        assert (part["rank_lo"] <= part["rank_hi"]).all()
    assert curves["layer"].min() == 1


def test_facts_clusters_knockouts():
    facts = paper.facts_curves()
    assert set(facts["group"]) == {"facts: memorized", "facts: non-memorized", "wikipedia"}
    assert facts[facts["group"] == "facts: memorized"]["prob"].iloc[-1] == pytest.approx(0.2092)
    clusters = paper.clusters()
    sizes = clusters.groupby("cluster")["size"].first()
    assert len(sizes) == 7 and sizes.sum() == 343
    fig3 = paper.knockouts("figure3")
    assert fig3["window"].between(1, 3).all()
    one = fig3[(fig3["kind"] == "non-dominant") & (fig3["start"] == 1) & (fig3["end"] == 1)]
    assert one["value"].item() == 99
    with pytest.raises(ValueError, match="figure must be"):
        paper.knockouts("figure7")
