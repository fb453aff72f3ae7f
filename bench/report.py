"""The rows every benchmark part returns, and the table `run_all` prints from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Row:
    """One figure: Tally's measurement, the baseline from the same run, and their ratio.

    `ratio` is always "how Tally compares", oriented as the goal is written (a throughput
    ratio, a time ratio, or a size ratio); `goal` repeats issue 7's target when it has one."""

    part: str
    figure: str
    value: str
    baseline: str
    ratio: float | None
    goal: str = ""
    note: str = ""
    cpu_ratio: float | None = None  # server CPU per request, Tally / baseline (wrk figures)


def rate(x: float, unit: str = "req/s") -> str:
    return f"{x:,.0f} {unit}"


def millis(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 0.1 else f"{seconds * 1e3:,.0f} ms"


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


COLUMNS = ("figure", "Tally", "baseline (same run)", "ratio", "goal", "CPU/req")


def cells(row: Row) -> tuple[str, ...]:
    return (row.figure, row.value, row.baseline, ratio_text(row.ratio), row.goal,
            ratio_text(row.cpu_ratio))


def text_table(rows: Sequence[Row]) -> str:
    """Fixed-width columns; each row's note on the line below it."""
    widths = [max([len(c)] + [len(cells(r)[i]) for r in rows]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells(row), widths, strict=True)))
        if row.note:
            lines.append("    " + row.note)
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " | note |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        lines.append("| " + " | ".join(cells(row)) + f" | {row.note} |")
    return "\n".join(lines)
