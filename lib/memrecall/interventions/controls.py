"""The knockout controls: one table, from which every list, label and line style derives.

A control says which neurons of a layer a knockout zeroes, given the k chosen per probe and
layer: the paper's two (the k *dominant* sub-updates, or all *but* them) and ours (k random
neurons, as many zeroed as the dominant control, to tell a specific effect from generic damage).
Adding a control is a row here (and, if it draws its neurons another way, a case in the sweep's
plan, :mod:`memrecall.interventions.sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONTROLS", "CONTROL_TABLE", "PAPER_CONTROLS", "Control", "control"]


@dataclass(frozen=True)
class Control:
    """One knockout control.

    Attributes:
        name: as in the sweep's rows and the CSVs (``non_dominant``).
        label: a figure legend's words (``all but the k dominant knocked out``).
        panel: a heatmap row's title, ``{k}`` standing for the neurons per layer.
        linestyle: its line style, the same in every figure.
        draw: which k neurons are chosen: ``dominant`` (the top-k sub-updates of the clean run)
            or ``random`` (a seeded uniform draw per probe and layer).
        complement: zero every neuron *but* the chosen ones.
        paper_kind: the paper's name for it (``memrecall.data.paper.knockouts``' ``kind``), or
            None for a control the paper does not have.
    """

    name: str
    label: str
    panel: str
    linestyle: str
    draw: str
    complement: bool
    paper_kind: str | None


CONTROL_TABLE = (
    Control("dominant", "k dominant knocked out", "{k} dominant", "-", draw="dominant",
            complement=False, paper_kind="dominant"),
    Control("non_dominant", "all but the k dominant knocked out", "all but the {k} dominant",
            ":", draw="dominant", complement=True, paper_kind="non-dominant"),
    Control("random", "k random knocked out", "{k} random", "--", draw="random",
            complement=False, paper_kind=None),
)
"""Every control, in the order the sweep runs them and the figures list them."""

CONTROLS: tuple[str, ...] = tuple(c.name for c in CONTROL_TABLE)
"""The controls' names."""

PAPER_CONTROLS: tuple[str, ...] = tuple(c.name for c in CONTROL_TABLE if c.paper_kind)
"""The controls the paper has (its Figures 3, 7-9)."""


def control(name: str) -> Control:
    """The control called ``name``.

    Raises:
        ValueError: no such control (names the known ones).
    """
    for entry in CONTROL_TABLE:
        if entry.name == name:
            return entry
    raise ValueError(f"unknown control {name!r}; choose from {CONTROLS}")
