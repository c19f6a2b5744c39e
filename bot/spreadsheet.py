"""CSV cells a spreadsheet shows as text: what people texted must never become a formula.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before one) is run
as a formula by Excel, LibreOffice and Google Sheets when the file is opened (CSV injection,
OWASP). Such a cell gets a leading ``'``, which spreadsheets read as "this is text" and hide; a
full E.164 number (``+14155550123``) is left as it is, since it is a number column's point.
Used by every CSV export (``python -m bot consent export``, ``python -m bot results``).
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"(whatsapp:)?\+\d{1,15}")


def csv_cell(value: str) -> str:
    """``value`` as a cell a spreadsheet shows as text, never runs."""
    if value.startswith(FORMULA_STARTS) and not _E164.fullmatch(value):
        return "'" + value
    return value
