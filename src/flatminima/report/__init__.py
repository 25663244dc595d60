"""Reports of experiment results: self-contained HTML, markdown summary, figure and table helpers."""

from .collect import Found, find_results
from .figures import STYLE, figure_style, new_figure, save_figure, use_style
from .tables import comparison_markdown, comparison_table, format_value, markdown_table, print_comparison
from .writer import REPORT_HTML, SUMMARY_MD, write_report

__all__ = [
    "REPORT_HTML",
    "STYLE",
    "SUMMARY_MD",
    "Found",
    "comparison_markdown",
    "comparison_table",
    "figure_style",
    "find_results",
    "format_value",
    "markdown_table",
    "new_figure",
    "print_comparison",
    "save_figure",
    "use_style",
    "write_report",
]
