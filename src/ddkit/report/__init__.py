"""Reports: leaderboard (Markdown + JSON), grids of each distilled set, accuracy-vs-IPC plots."""

from ddkit.report.leaderboard import collect_rows, leaderboard_markdown, write_report

__all__ = ["collect_rows", "leaderboard_markdown", "write_report"]
