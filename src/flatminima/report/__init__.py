"""Reports of experiment results and training runs: self-contained HTML, markdown summary, figure and table
helpers, ``plot_run`` (a run's metrics over steps)."""

from .._lazy import lazy_exports
from .collect import Found, find_results
from .figures import STYLE, figure_style, new_figure, save_figure, use_style
from .run_series import RunMetrics, find_runs, run_metrics
from .tables import comparison_markdown, comparison_table, format_value, markdown_table, print_comparison
from .writer import REPORT_HTML, SUMMARY_MD, write_report

__getattr__ = lazy_exports(__name__, {"plot_run": ".run_plots", "run_figure": ".run_plots"})

__all__ = [
    "REPORT_HTML",
    "STYLE",
    "SUMMARY_MD",
    "Found",
    "RunMetrics",
    "comparison_markdown",
    "comparison_table",
    "figure_style",
    "find_results",
    "find_runs",
    "format_value",
    "markdown_table",
    "new_figure",
    "plot_run",
    "print_comparison",
    "run_figure",
    "run_metrics",
    "save_figure",
    "use_style",
    "write_report",
]
