"""Shared plot helpers (matplotlib only: no torch, so pytest's controller can draw reports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def label_axes(
    ax: Axes,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: float | None = 10,
    logy: bool = False,
    legend: int = 8,
    ncol: int = 1,
) -> None:
    """Axes labels, title, log scales (``logx`` is the x base, None for linear), legend and grid of one panel."""
    if logx is not None:
        ax.set_xscale("log", base=logx)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend, ncol=ncol)
    ax.grid(True, which="both", alpha=0.3)
