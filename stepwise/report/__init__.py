"""Reports written to the run directory: report.txt, report.json and curves.png."""

from stepwise.report.curves import plot_curves
from stepwise.report.write import write_reports

__all__ = ["plot_curves", "write_reports"]
