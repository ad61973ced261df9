"""Console helpers shared by the commands: one rich console, tables from dicts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

#: Without a terminal (a pipe, a CronJob's log, ``ray job submit``) rich would assume 80 columns and
#: wrap tables and paths mid-word, or cut table cells short with "…"; logs have no width, so lines
#: are left as long as they are (rich needs a number: one no line reaches).
console = Console(width=None if sys.stdout.isatty() else 100_000)


def plain_line(line: str) -> None:
    """One progress line, as it is: no markup, no highlighting, no wrapping."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Exactly one JSON document on stdout (no rich markup), for scripts."""
    print(json.dumps(data, indent=2, default=str))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    # As wide as its title: a narrower table wraps the title (a model's URI) over several lines.
    out = Table(title=title, title_justify="left", min_width=cell_len(title))
    for column in columns:
        out.add_column(str(column))
    for row in rows:
        out.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    return out
