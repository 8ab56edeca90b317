"""Keep what the explorer shows: its picture as PNG and PDF, its per-layer table as CSV.

:func:`export` writes them all or nothing (:func:`memrecall._io.atomic_write_all`) under the
notebook's folders (``run.figures_dir`` and ``run.results_dir``: in an interactive session
``figures/interactive/<profile>/`` and ``results/interactive/<profile>/``), named after the
model(s), the lens and the text(s), so a second export of the same view replaces the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write_all, slug
from ..figures.compare import Comparison
from ..figures.style import PNG_DPI
from ..figures.trajectory import Trajectory, drawing
from ..lenses import LogitLens

__all__ = ["Exported", "export", "export_name"]


@dataclass(frozen=True)
class Exported:
    """The files one export wrote."""

    png: Path
    pdf: Path
    csv: Path

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        """PNG, PDF and CSV."""
        return self.png, self.pdf, self.csv


def export_name(view: Trajectory | Comparison) -> str:
    """The files' base name: ``explorer_<model>_<text>`` (``explorer_compare_...`` for two)."""
    views = view.views if isinstance(view, Comparison) else (view,)
    parts = [f"{slug(v.model, 40)}_{slug(v.text, 40)}" for v in views]
    lens = "" if views[0].lens == LogitLens.label else "_" + slug(views[0].lens, 20)
    track = f"_track-{slug(views[0].track_label, 20)}" if views[0].track_label else ""
    kind = "explorer_compare_" if len(views) > 1 else "explorer_"
    return kind + "__".join(parts) + lens + track


def export(view: Trajectory | Comparison, figures_dir: str | Path,
           results_dir: str | Path, name: str | None = None) -> Exported:
    """Write ``view``'s picture (PNG, PDF) to ``figures_dir``, its table (CSV) to ``results_dir``.

    Args:
        view: what the explorer shows.
        figures_dir: where the pictures go (created if missing).
        results_dir: where the CSV goes (created if missing).
        name: the files' base name (default :func:`export_name`).

    Returns:
        The three paths, written all or nothing.
    """
    base = name or export_name(view)
    out = Exported(Path(figures_dir) / f"{base}.png", Path(figures_dir) / f"{base}.pdf",
                   Path(results_dir) / f"{base}.csv")
    with drawing():
        figure = view.figure()
        atomic_write_all({
            out.png: lambda temp: figure.savefig(temp, format="png", dpi=PNG_DPI,
                                                 metadata={"Software": None}),
            out.pdf: lambda temp: figure.savefig(temp, format="pdf",
                                                 metadata={"CreationDate": None}),
            out.csv: lambda temp: view.frame().to_csv(temp, index=False),
        })
    return out
