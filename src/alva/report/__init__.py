"""Report: every figure alva draws (image grids, plots, bar charts) and the HTML page of a run folder."""

from alva.report.figures import (
    adversarial_grid,
    distance_curve_plot,
    eps_curve_plot,
    grouped_bars,
    pick_examples,
    sparse_grid,
)

__all__ = ["adversarial_grid", "distance_curve_plot", "eps_curve_plot", "grouped_bars", "pick_examples", "sparse_grid"]
