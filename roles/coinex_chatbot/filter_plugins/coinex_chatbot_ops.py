"""Tables of the ops entry point (tasks/ops.yml): `rows | coinex_chatbot_table(columns)`.

columns: [[HEADER, key], ...]; every cell is shown as text ('-' for none or ''); columns are
left-aligned to their widest cell, two spaces apart, lines without trailing spaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def coinex_chatbot_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[Sequence[str]]
) -> str:
    cells = [[header for header, _ in columns]]
    cells += [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


class FilterModule:
    def filters(self) -> dict[str, Callable[..., str]]:
        return {"coinex_chatbot_table": coinex_chatbot_table}
