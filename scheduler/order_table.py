"""Today's orders for people: the ``fluoroctl worklist`` table and the pick of ``run --pick``."""

from __future__ import annotations

import io
import sys
from typing import TextIO

from drivers.config import ConfigError

from .orders import Order


def pick_at_terminal(orders: list[Order], stream: TextIO | None = None) -> Order:
    """Show ``orders`` and read the number of the one to run (standard input)."""
    out = stream or sys.stderr
    if not sys.stdin.isatty():
        raise ConfigError(
            "--order", None, "", "picking an order needs a terminal: give --order ACCESSION"
        )
    print(order_table(orders), file=out)
    while True:
        print(f"order to run [1-{len(orders)}, q to quit]: ", end="", file=out, flush=True)
        answer = sys.stdin.readline().strip()
        if answer.lower() in ("q", ""):
            raise KeyboardInterrupt
        if answer.isdigit() and 1 <= int(answer) <= len(orders):
            return orders[int(answer) - 1]


def order_table(orders: list[Order]) -> str:
    """``orders`` as a text table, one row each, numbered from 1."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Scheduled procedures ({len(orders)})")
    for col in (
        "#",
        "time",
        "accession",
        "patient",
        "ID",
        "born",
        "sex",
        "kg",
        "procedure",
        "station",
        "referring",
    ):
        table.add_column(col)
    for i, o in enumerate(orders, 1):
        code = o.requested_procedure_code
        table.add_row(
            str(i),
            "" if o.scheduled_start is None else o.scheduled_start.strftime("%H:%M"),
            o.accession_number or "",
            o.patient_name,
            o.patient_id,
            "" if o.birth_date is None else o.birth_date.isoformat(),
            o.sex,
            "" if o.weight_kg is None else f"{o.weight_kg:g}",
            " ".join(
                x for x in (code.value if code else "", o.requested_procedure_description) if x
            ),
            o.scheduled_station_ae,
            o.referring_physician,
        )
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().rstrip()
