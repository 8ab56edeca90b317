"""Figures beside the paper's digitized curves (memrecall.figures.paper)."""

import numpy as np
import pandas as pd

from memrecall import analysis, figures
from memrecall.data import paper


def _labelled(n_layers=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for group in ("memorized", "non-memorized", "wikipedia"):
        for _ in range(12):
            rank = np.r_[rng.integers(1, 900, n_layers - 1), 0]
            rows.append({"group": group, "pred_rank": rank,
                         "pred_prob": np.sort(rng.random(n_layers))})
    return pd.DataFrame(rows)


def test_curves_beside_paper_both_rank_scales(tmp_path):
    ours = {"m": analysis.mean_curves(_labelled())}
    for log_rank in (False, True):
        saved = figures.plot_curves_beside_paper(ours, paper.figure2(), tmp_path / "f",
                                                     "test", log_rank=log_rank)
        assert saved.pdf.is_file() and saved.png.is_file()
        left, right = saved.figure.axes[0], saved.figure.axes[1]
        assert "digitized" in left.get_title()
        assert {line.get_gid() for line in left.lines} == {line.get_gid() for line in right.lines}
        rank_axes = saved.figure.axes[2]
        assert rank_axes.get_yscale() == ("symlog" if log_rank else "linear")


def test_clusters_beside_paper(tmp_path):
    frame = _labelled()
    labels = analysis.cluster_labels(frame, k=3)
    saved = figures.plot_clusters_beside_paper(analysis.cluster_curves(frame, labels),
                                                   paper.clusters(), tmp_path / "c", "test")
    assert saved.png.is_file()
    assert len(saved.figure.axes[0].lines) == 7 + 1  # the paper's seven clusters, the 0.5 line
