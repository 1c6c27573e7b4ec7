"""Tables on stdout: a rich table on a terminal, tab-separated lines (no header) in a pipe.

``nst list losses | cut -f1`` gives the names, one per line.
"""

from __future__ import annotations

from collections.abc import Sequence
import sys


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> None:
    """Print ``rows``; on a terminal with ``headers`` and ``title``, else as TSV."""
    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(" ".join(str(cell).split()) for cell in row))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(*headers, title=title or None, title_justify="left", highlight=False)
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    Console().print(table)
