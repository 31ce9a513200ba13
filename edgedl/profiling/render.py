"""Reports and diffs on the terminal, as rich tables."""

from __future__ import annotations

from typing import Any

from edgedl.profiling.tables import TextTable, device_lines, report_tables


def rich_table(table: TextTable) -> Any:
    """A :class:`rich.table.Table` of ``table``."""
    from rich.table import Table
    from rich.text import Text

    out = Table(title=table.title, caption=table.caption)
    for header, align in zip(table.headers, table.align or ["l"] * len(table.headers), strict=True):
        out.add_column(header, justify="right" if align == "r" else "left")
    for row in table.rows:
        out.add_row(*(Text(cell) for cell in row))  # plain text: "[host]" is not markup
    return out


def print_report(report: dict[str, Any], console: Any) -> None:
    """Every table, the device lines and the warnings of ``report`` on a rich ``console``."""
    for table in report_tables(report):
        console.print(rich_table(table))
    for line in device_lines(report):
        console.print(line, highlight=False)
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
