"""Tests of memrecall.pipeline.sections: the sections notebooks 03 and 04 share."""

import pytest
from test_plots import labelled

from memrecall import analysis, pipeline, report


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    run = pipeline.settings("smoke", ["tiny-gpt2", "tiny-llama"], root=root)
    frames = {"tiny-gpt2": labelled(8), "tiny-llama": labelled(12, seed=1)}
    return run, frames, analysis.per_example_tables(frames)


def test_layerwise_figures_one_per_model_named_by_stem(inputs):
    run, frames, tables = inputs
    figures = pipeline.layerwise_figures(frames, tables, run, "99_layerwise")
    assert [f.png.name for f in figures] == ["99_layerwise_tiny-gpt2.png",
                                             "99_layerwise_tiny-llama.png"]
    assert all(f.png.parent == run.figures_dir and f.pdf.is_file() for f in figures)


def test_layerwise_figures_draw_the_split_line_only_when_asked(inputs):
    run, frames, tables = inputs
    split = report.split_layer(tables["tiny-gpt2"], "memorized")
    assert split is not None  # the fixture's memorized group is promoted at layers 3-4
    with_line = pipeline.layerwise_figures(frames, tables, run, "99_a")[0].figure
    without = pipeline.layerwise_figures(frames, tables, run, "99_b", column="target",
                                              split_group=None)[0].figure
    dashed = [line for ax in with_line.axes for line in ax.lines
              if line.get_linestyle() == "--" and list(line.get_xdata()) == [split, split]]
    assert dashed
    assert not [line for ax in without.axes for line in ax.lines
                if line.get_linestyle() == "--" and len(set(line.get_xdata())) == 1]


def test_promotion_by_model_pairs_the_medians_with_the_figure(inputs):
    run, _, tables = inputs
    sections = pipeline.promotion_by_model(tables, run, "99_promotion")
    assert list(sections) == list(tables)
    medians, figure = sections["tiny-llama"]
    assert medians.equals(report.medians_table(tables["tiny-llama"]))
    assert figure.png.name == "99_promotion_tiny-llama.png" and figure.png.is_file()


def test_cross_model_figure_and_depth_table(inputs):
    run, frames, tables = inputs
    figure, depths = pipeline.cross_model(frames, tables, run, "99_cross", "t")
    assert figure.png == run.figures_dir / "99_cross.png" and figure.png.is_file()
    assert depths.equals(analysis.median_by_model(tables, "promotion_depth"))


def test_cross_model_title_says_what_and_flags_the_smoke_models(inputs):
    run = inputs[0]
    assert pipeline.cross_model_title(run) == (
        "2 models, smoke profile (smoke test: tiny random models)")
    offline = pipeline.settings("offline", root=run.figures_dir)
    assert pipeline.cross_model_title(offline, "Facts and idioms") == (
        f"Facts and idioms, {len(offline.models)} models, offline profile")
