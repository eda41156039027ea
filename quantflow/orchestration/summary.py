"""The table `quantflow run` prints at the end of a pipeline run."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quantflow.core.request import RunRequest
from quantflow.orchestration.runlog import one_line


def print_summary(console: Console, request: RunRequest, summary: object) -> None:
    from quantflow.steps.gate import table_rows

    ctx = request.step
    if ctx.paths.gate.exists():
        rows = table_rows(ctx)
        table = Table(title=f"{ctx.name}: variants and gate")
        first = rows[0]
        columns = ["variant", "value", "drop", "agreement_pct", "sqnr_db", "size_bytes", "ratio",
                   "p50_ms", "io", "gate"]
        unit = " (pp, 95% CI)" if first["unit"] else " (95% CI)"
        headers = {"value": f"{first['metric']}{' %' if first['unit'] else ''}",
                   "drop": f"drop{unit}", "agreement_pct": "agree %", "sqnr_db": "SQNR dB"}
        for c in columns:
            table.add_column(headers.get(c, c), no_wrap=True)
        for r in rows:
            style = {"PASS": "green", "FAIL": "red"}.get(r["gate"], "")
            table.add_row(*["" if r[c] is None else escape(str(r[c])) for c in columns],
                          style=style)
        console.print(table)
        for r in rows:
            if r["gate"] == "FAIL":
                console.print(f"  [red]{escape(r['variant'])}[/red]: "
                              f"{escape(one_line(r['reason']))}")
        console.print(f"report: {ctx.paths.report.relative_to(ctx.workspace)}")
    status = summary.status  # type: ignore[attr-defined]
    colour = {"published": "green", "blocked": "red"}.get(status, "yellow")
    console.print(f"[{colour}]{ctx.name}: {status}[/{colour}]"
                  f"{' version ' + summary.version if summary.version else ''}"  # type: ignore
                  f"{' - ' + escape(summary.message) if summary.message else ''}")  # type: ignore
    if summary.failed_variants:  # type: ignore[attr-defined]
        console.print(f"[red]failed variants: {', '.join(summary.failed_variants)}[/red]")
