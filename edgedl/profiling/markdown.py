"""Reports and diffs as markdown, for pasting into an issue or a pull request."""

from __future__ import annotations

from typing import Any

from edgedl.profiling.tables import TextTable, device_lines, report_tables


def markdown_table(table: TextTable) -> str:
    """A GitHub-flavoured markdown table with its title in bold and its caption in italics."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    aligns = table.align or ["l"] * len(table.headers)
    lines = [f"**{table.title}**", "", "| " + " | ".join(cell(h) for h in table.headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", f"_{table.caption}_"]
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    """The whole report: a heading, device lines, tables and warnings."""
    runs = ", ".join(run["label"] for run in report["runs"])
    parts = [f"### edgedl profile: `{report['bundle']}` on {runs} ({report['mode']})", "",
             f"edgedl {report['software'].get('edgedl', '?')}, {report['created']}", ""]
    parts += [f"- {line}" for line in device_lines(report)]
    for table in report_tables(report):
        parts += ["", markdown_table(table)]
    if report["warnings"]:
        parts += ["", "**Warnings**", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(parts) + "\n"
