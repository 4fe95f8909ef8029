"""Report: image grids and plots."""

from alva.report.figures import adversarial_grid, eps_curve_plot, pick_examples

__all__ = ["adversarial_grid", "eps_curve_plot", "pick_examples"]
