"""Tests of memrecall.figures.style: files written, no figure left open, stable group colours."""

import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import SymLogNorm, to_hex

from memrecall import analysis, figures, interventions


def labelled(n_layers: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for group, n, start in (("memorized", 15, 2), ("non-memorized", 25, 5),
                            ("wikipedia", 10, 6)):
        for _ in range(n):
            rank = rng.integers(1, 3000, n_layers)
            rank[min(start + rng.integers(0, 2), n_layers - 1):] = 0
            prob = np.clip(np.linspace(0, 1, n_layers) ** 2 + rng.normal(0, .05, n_layers), 0, 1)
            rows.append({"group": group, "is_memorized": group == "memorized",
                         "pred_rank": rank, "pred_prob": prob,
                         "target_rank": rank, "target_prob": prob})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return labelled(8)


def summaries(frame: pd.DataFrame, what: str = "pred") -> tuple[pd.DataFrame, pd.DataFrame]:
    return (analysis.layer_summary(frame, f"{what}_prob", n_boot=200),
            analysis.layer_summary(frame, f"{what}_rank", n_boot=200))


def heatmap_frame() -> pd.DataFrame:
    values = np.full((6, 6), np.nan)
    for start in range(6):
        values[start, start:min(start + 3, 6)] = 1 / (1 + start)
    return pd.DataFrame(values, index=range(6), columns=range(6))


def make_all(frame: pd.DataFrame, tmp_path) -> dict:
    """Call every plot function once; name -> SavedFigure."""
    prob, rank = summaries(frame)
    other = labelled(12, seed=1)
    bars = pd.DataFrame({"source": ["MAGPIE", "LIdioms", "MAGPIE", "LIdioms"],
                         "model": ["a", "a", "b", "b"], "pct": [40.0, 20.0, 55.0, 30.0]})
    return {
        "layerwise": figures.plot_layerwise(prob, rank, tmp_path / "layerwise", "m",
                                          split_layer=4),
        "target": figures.plot_target_layerwise(*summaries(frame, "target"),
                                              tmp_path / "target.pdf", "m"),
        "promotion": figures.plot_promotion(
            analysis.per_example_table(frame), tmp_path / "promotion", "m"),
        "cross": figures.plot_cross_model(
            {"eight": prob, "twelve": analysis.layer_summary(other, "pred_prob", n_boot=50)},
            {"eight": rank, "twelve": analysis.layer_summary(other, "pred_rank", n_boot=50)},
            tmp_path / "sub" / "cross", "two models"),
        "heatmap": figures.plot_heatmaps({"k": {"g": heatmap_frame()}}, tmp_path / "heat",
                                       "knockout"),
        "bars": figures.plot_bars(bars, tmp_path / "bars.png", "memorized", x="source", y="pct",
                                hue="model", ylabel="memorized idioms (%)"),
    }


@pytest.fixture(scope="module")
def made(frame, tmp_path_factory):
    """Every plot made once: (figure numbers before, after, tmp dir, name -> SavedFigure)."""
    tmp_path = tmp_path_factory.mktemp("plots")
    before = plt.get_fignums()
    saved = make_all(frame, tmp_path)
    return before, plt.get_fignums(), tmp_path, saved


def test_every_plot_writes_pdf_and_png_and_closes(made):
    before, after, tmp_path, saved = made
    assert after == before
    assert len(saved) == 6
    for name, result in saved.items():
        assert result.pdf.suffix == ".pdf" and result.png.suffix == ".png", name
        assert result.pdf.with_suffix("") == result.png.with_suffix("")
        assert result.pdf.read_bytes()[:4] == b"%PDF", name
        assert result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert result.png.stat().st_size > 5000, name
        assert result._repr_png_() == result.png.read_bytes()
    assert saved["target"].pdf == tmp_path / "target.pdf"
    assert (tmp_path / "sub" / "cross.png").is_file()


def test_png_is_modest_resolution(frame, tmp_path):
    prob, rank = summaries(frame)
    saved = figures.plot_layerwise(prob, rank, tmp_path / "f", "m")
    width = int.from_bytes(saved.png.read_bytes()[16:20], "big")
    assert 400 < width < 1200


def colors_by_gid(fig) -> dict[str, str]:
    found = {}
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.patches]:
            gid = artist.get_gid()
            if gid in analysis.GROUPS:
                color = (artist.get_color() if hasattr(artist, "get_xdata")
                         else artist.get_facecolor())
                found.setdefault(gid, set()).add(to_hex(color, keep_alpha=False))
    return found


def test_same_group_same_colour_across_figures(made):
    saved = made[3]
    seen = [colors_by_gid(saved[name].figure) for name in ("layerwise", "promotion", "cross")]
    for group in analysis.GROUPS:
        colours = set().union(*(s[group] for s in seen))
        assert colours == {figures.GROUP_COLORS[group].lower()}, group
    assert len(set(figures.GROUP_COLORS.values())) == len(figures.GROUP_COLORS)


def test_layerwise_axes_are_one_based_and_rank_axis_is_log(frame, tmp_path):
    prob, rank = summaries(frame)
    fig = figures.plot_layerwise(prob, rank, tmp_path / "f", "my model", split_layer=4).figure
    top, bottom = fig.axes
    assert bottom.get_yscale() == "symlog"
    line = next(ln for ln in top.lines if ln.get_gid() == "memorized")
    assert line.get_xdata()[0] == 1 and line.get_xdata()[-1] == 8
    assert any(ln.get_xdata()[0] == 4 for ln in bottom.lines if ln.get_gid() is None)
    assert fig.get_suptitle() == "my model"
    assert "layer" in bottom.get_xlabel()


def test_heatmap_labels_are_one_based(tmp_path):
    fig = figures.plot_heatmaps({"k": {"g": heatmap_frame()}}, tmp_path / "h", "k").figure
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4", "5", "6"]
    assert "%" in fig.axes[1].get_ylabel()
    one_based = figures.plot_heatmaps({"k": {"g": heatmap_frame().rename(index=lambda i: i + 1)}},
                                    tmp_path / "h1", "k", index_base=1).figure
    assert one_based.axes[0].get_yticklabels()[0].get_text() == "1"


def test_bars_label_values_and_use_one_colour_per_model(made):
    ax = made[3]["bars"].figure.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["40", "20", "55", "30"]
    colours = {p.get_gid(): to_hex(p.get_facecolor()) for p in ax.patches}
    assert set(colours) == {"a", "b"} and colours["a"] != colours["b"]


UNKNOWN_GROUPS = ["facts: other", "idioms: rare", "xyz", "wikipedia: long", "a", "b", "c"]


def test_group_color_is_stable_for_unknown_groups():
    """The same unknown group gets the same colour in another process (another hash seed)."""
    assert figures.group_color("memorized") == figures.GROUP_COLORS["memorized"]
    here = [figures.group_color(g) for g in UNKNOWN_GROUPS]
    assert len(set(here)) > 1  # spare colours are spread, not one constant
    code = ("import sys; from memrecall import figures; "
            "print(','.join(figures.group_color(g) for g in sys.argv[1:]))")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, *UNKNOWN_GROUPS], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out.split(",") == here, f"colours change with PYTHONHASHSEED={seed}"


def knockout_profile(n_layers: int = 6) -> pd.DataFrame:
    rows = []
    for group, n in (("memorized", 30), ("non-memorized", 30), ("wikipedia", 12)):
        for control in ("dominant", "random"):
            for k in (10, 100):
                for layer in range(1, n_layers + 1):
                    rows.append({"group": group, "control": control, "k": k, "layer": layer,
                                 "n_probes": n, "changed_pct": 100 / (layer + k / 10)})
    return pd.DataFrame(rows)


def test_heatmaps_share_one_scale_and_label_layers_one_based(tmp_path):
    before = plt.get_fignums()
    panels = {"10 dominant": {"memorized (n=3)": heatmap_frame(),
                              "wikipedia (n=4)": heatmap_frame()},
              "100 dominant": {"memorized (n=3)": heatmap_frame()}}
    saved = figures.plot_heatmaps(panels, tmp_path / "hm", "model: knockouts")
    assert plt.get_fignums() == before
    assert saved.pdf.is_file() and saved.png.is_file()
    fig = saved.figure
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert {(im.norm.vmin, im.norm.vmax) for im in images} == {(0.0, 100.0)}
    first = fig.axes[0]
    assert [t.get_text() for t in first.get_xticklabels()] == ["1", "2", "3", "4", "5", "6"]
    assert "memorized (n=3)" in first.get_title() and "10 dominant" in first.get_title()
    assert not fig.axes[3].axison  # the missing panel stays empty
    assert fig.get_suptitle() == "model: knockouts"
    assert "%" in fig.axes[-1].get_ylabel()
    symlog = figures.plot_heatmaps(panels, tmp_path / "log", "ranks", vmin=None, vmax=None,
                                 symlog=1.0).figure
    assert all(isinstance(ax.images[0].norm, SymLogNorm)
               for ax in symlog.axes if ax.images)
    with pytest.raises(ValueError):
        figures.plot_heatmaps({}, tmp_path / "none", "x")


def test_knockout_lines_colour_by_group_style_by_control(tmp_path):
    saved = figures.plot_knockout_lines(knockout_profile(), tmp_path / "lines", "model")
    fig = saved.figure
    assert len(fig.axes) == 2 and saved.png.is_file()
    lines = {ln.get_gid(): ln for ln in fig.axes[0].lines if ln.get_gid()}
    assert len(lines) == 6
    for gid, line in lines.items():
        group, control = gid.split("|")
        assert to_hex(line.get_color()) == figures.GROUP_COLORS[group].lower()
        assert line.get_linestyle() == interventions.control(control).linestyle
        assert line.get_xdata()[0] == 1 and line.get_xdata()[-1] == 6
    assert "k = 10" in fig.axes[0].get_title() and "1-based" in fig.axes[0].get_xlabel()
    zero_based = knockout_profile().assign(start_layer=lambda f: f.pop("layer") - 1)
    again = figures.plot_knockout_lines(zero_based, tmp_path / "zero", "model").figure
    assert [ln.get_xdata()[0] for ln in again.axes[0].lines if ln.get_gid()] == [1] * 6
    only_top = figures.plot_knockout_lines(knockout_profile(), tmp_path / "top", "m",
                                         controls=["dominant"]).figure
    assert {ln.get_gid().split("|")[1] for ln in only_top.axes[0].lines if ln.get_gid()} \
        == {"dominant"}


def test_lens_kl_one_line_per_lens_one_based_without_the_output_layer(tmp_path):
    kl = pd.DataFrame({"lens": ["logit lens"] * 4 + ["tuned lens"] * 4,
                       "layer": [0, 1, 2, 3] * 2, "kl_bits": [8, 4, 2, 0, 4, 2, 1, 0.0],
                       "se_bits": 0.1, "n_tokens": 512})
    saved = figures.plot_lens_kl(kl, tmp_path / "kl", "model")
    assert saved.png.is_file() and saved.pdf.is_file()
    ax = saved.figure.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
    assert set(lines) == {"logit lens", "tuned lens"}
    assert list(lines["tuned lens"].get_xdata()) == [1, 2, 3]  # the output layer (0 bits) left out
    logit_colour = figures.LENS_STYLES["logit lens"][0]
    assert to_hex(lines["logit lens"].get_color()) == logit_colour.lower()
    assert ax.get_yscale() == "log" and "bits" in ax.get_ylabel()
