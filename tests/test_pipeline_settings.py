"""Where a run writes: batch runs to figures|results/<profile>, JupyterLab sessions aside."""

from pathlib import Path

import pytest

from memrecall import pipeline
from memrecall.interventions import SweepConfig


def test_batch_run_writes_the_profiles_folders(tmp_path):
    run = pipeline.settings("smoke", root=tmp_path)
    assert run.figures_dir == tmp_path / "figures" / "smoke"
    assert run.results_dir == tmp_path / "results" / "smoke"
    assert run.cache_dir == tmp_path / "results" / "smoke" / "cache"


def test_interactive_run_writes_aside_and_shares_the_cache(tmp_path):
    run = pipeline.settings("smoke", root=tmp_path, interactive=True)
    assert run.figures_dir == tmp_path / "figures" / "interactive" / "smoke"
    assert run.results_dir == tmp_path / "results" / "interactive" / "smoke"
    assert run.figures_dir.is_dir() and run.results_dir.is_dir()
    assert run.cache_dir == pipeline.settings("smoke", root=tmp_path).cache_dir


def test_explicit_folders_win_and_hold_their_cache(tmp_path):
    run = pipeline.settings("smoke", root=tmp_path, interactive=True,
                            results_dir=tmp_path / "r", figures_dir=str(tmp_path / "f"))
    assert (run.results_dir, run.figures_dir) == (tmp_path / "r", Path(tmp_path / "f"))
    assert run.cache_dir == tmp_path / "r" / "cache"


def test_quick_run_is_one_model_small_samples_and_never_the_committed_folders(tmp_path):
    full = pipeline.settings("offline", root=tmp_path)
    quick = pipeline.settings("offline", root=tmp_path, quick=True)
    assert quick.models == full.models[:1]
    assert (quick.n_idioms, quick.n_wiki, quick.n_facts, quick.n_knockout) == (60, 30, 60, 10)
    assert quick.lens.fit_tokens < full.lens.fit_tokens
    assert quick.lens.tuned_steps < full.lens.tuned_steps
    # a batch quick run still writes aside, and reads the one cache
    assert quick.results_dir == tmp_path / "results" / "interactive" / "offline"
    assert quick.figures_dir == tmp_path / "figures" / "interactive" / "offline"
    assert quick.cache_dir == full.cache_dir


def test_quick_keeps_named_models_explicit_sizes_and_smaller_profiles(tmp_path):
    run = pipeline.settings("offline", "smollm2-135m,qwen2.5-coder-0.5b", root=tmp_path,
                            quick=True, n_idioms=12)
    assert run.models == ("smollm2-135m", "qwen2.5-coder-0.5b") and run.n_idioms == 12
    smoke, smoke_quick = (pipeline.settings("smoke", root=tmp_path, quick=q)
                          for q in (False, True))
    assert (smoke_quick.n_idioms, smoke_quick.n_wiki, smoke_quick.n_knockout) == (
        smoke.n_idioms, smoke.n_wiki, smoke.n_knockout)  # already smaller than quick's
    assert smoke_quick.lens == smoke.lens


def test_interactive_folders_are_git_ignored():
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert {"/figures/interactive/", "/results/interactive/"} <= set(ignored)


def test_the_header_names_profile_models_details_and_where_outputs_go(tmp_path):
    run = pipeline.settings("smoke", ["tiny-gpt2", "tiny-bert"], root=tmp_path, n_idioms=7)
    lines = run.describe("extra detail", run.sizes()).split("\n")
    assert lines == ["profile smoke: models tiny-gpt2, tiny-bert", "extra detail",
                     f"idioms: 7 (analysed: {run.population_label}), Wikipedia texts: "
                     f"{run.n_wiki}",
                     f"results -> {run.results_dir}", f"figures -> {run.figures_dir}"]
    everything = pipeline.settings("offline", root=tmp_path, n_idioms=None)
    assert everything.sizes().startswith("idioms: all (analysed: idioms that pass the paper's")
    assert pipeline.settings("offline", root=tmp_path, population="all").population == "all"
    with pytest.raises(ValueError, match="population"):
        pipeline.settings("offline", root=tmp_path, population="most")


def test_table_display_sets_the_notebooks_pandas_options():
    import pandas as pd

    with pd.option_context("display.precision", 6, "display.width", 80,
                           "display.max_colwidth", 10):
        pipeline.table_display(max_colwidth=90)
        assert (pd.get_option("display.precision"), pd.get_option("display.width"),
                pd.get_option("display.max_colwidth")) == (3, 120, 90)


def test_knockout_runtime_adds_rows_per_second():
    def result(model: str, rows: int, seconds: float) -> pipeline.KnockoutResults:
        runtime = {"model": model, "layers": 2, "rows (configuration x probe)": rows,
                   "seconds": seconds}
        return pipeline.KnockoutResults(model, 2, *[None] * 4, runtime, "memorized", None, None,
                                        SweepConfig())

    table = pipeline.knockout_runtime({"a": result("a", 100, 4.0), "b": result("b", 30, 0.5)})
    assert list(table.index) == ["a", "b"]
    assert table["rows per second"].tolist() == [25.0, 60.0]
