"""A broadcast's recipients: the CSV read as a stream, each row found again by where it starts.

A list of a million rows (each a dict of its columns) would take about a gigabyte, so a broadcast
never holds one: ``CsvRecipients.scan`` reads the file once, row by row, noting only each row's
byte offset (8 bytes a row, in an ``array``), and ``recipient(position)`` reads a row again from its
offset when its turn comes. ``read_recipients`` still returns the whole list, for small files and
tests; both read a file the same way: a header row, the number in column ``phone``, the other
columns as flow variables (``timezone``, when there, also the recipient's time zone).
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from bot.phones import DEFAULT_REGION, InvalidNumber, normalise_number

_BOM = b"\xef\xbb\xbf"


class BroadcastError(ValueError):
    """A broadcast that cannot start (bad CSV, unknown flow); the text says how to fix it."""


@dataclass(frozen=True)
class Recipient:
    line: int
    phone: str
    variables: dict[str, str]
    timezone: str = ""  # the CSV's optional ``timezone`` column (also a flow variable), an IANA name


class Recipients(Protocol):
    """Where a broadcast reads its recipients: once in order (``scan``), then each again by its
    place in that order (``recipient``). ``len`` is known before the scan."""

    def __len__(self) -> int: ...

    def scan(self) -> Iterator[Recipient]: ...

    def recipient(self, position: int) -> Recipient: ...


class ListedRecipients:
    """Recipients already in memory (tests, a few rows): ``Broadcast.run`` takes a plain list too."""

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        self._recipients = recipients

    def __len__(self) -> int:
        return len(self._recipients)

    def scan(self) -> Iterator[Recipient]:
        return iter(self._recipients)

    def recipient(self, position: int) -> Recipient:
        return self._recipients[position]


class _Lines:
    """The file's lines as text for ``csv.reader`` (which takes one line at a time), counting the
    bytes read so that the offset where the next row starts is always known. A lone carriage return
    ends a line too, as in the text mode the file used to be read in (old Mac spreadsheets)."""

    def __init__(self, handle: BinaryIO, offset: int) -> None:
        self.handle = handle
        self.offset = offset

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.handle.readline()
        if not raw:
            raise StopIteration
        cr = raw.find(b"\r")
        if cr != -1 and cr + 1 < len(raw) and raw[cr + 1] != 0x0A:  # "\r" then not "\n": a line of its own
            raw = raw[:cr + 1]
            self.handle.seek(self.offset + len(raw))
        self.offset += len(raw)
        return raw.decode("utf-8")


class CsvRecipients:
    """A CSV file's recipients, read as a stream: ``scan`` notes each row's offset, ``recipient``
    reads the row there again. Numbers are as written (``Broadcast`` reads them); a row with no
    cell at all is no recipient. Open it with ``open_recipients``; ``close`` when done."""

    def __init__(self, path: Path, handle: BinaryIO, fieldnames: list[str], start: int, rows: int) -> None:
        self.path = path
        self._handle = handle
        self._fieldnames = fieldnames
        self._start = start  # the first row's offset, after the header
        self._rows = rows
        self._offsets = array("q")

    def __len__(self) -> int:
        return self._rows

    def scan(self) -> Iterator[Recipient]:
        self._offsets = array("q")
        lines = _Lines(self._handle, self._start)
        self._handle.seek(self._start)
        reader = csv.reader(lines)
        while True:
            offset = lines.offset
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (UnicodeDecodeError, csv.Error) as error:
                raise BroadcastError(f"{self.path}: cannot read it: {error}") from None
            if not cells:  # a blank line, as csv.DictReader skips it
                continue
            self._offsets.append(offset)
            yield self._make(cells, reader.line_num + 1)  # the header is line 1

    def recipient(self, position: int) -> Recipient:
        offset = self._offsets[position]
        self._handle.seek(offset)
        try:
            cells = next(csv.reader(_Lines(self._handle, offset)))
        except (StopIteration, UnicodeDecodeError, csv.Error) as error:
            raise BroadcastError(f"{self.path}: the file changed while the broadcast ran ({error!r}); "
                                 "run it again") from None
        return self._make(cells, 0)  # its line was said when it was scanned

    def _make(self, cells: list[str], line: int) -> Recipient:
        missing = len(self._fieldnames) - len(cells)  # as csv.DictReader: missing cells empty, extra ones ignored
        row = dict(zip(self._fieldnames, cells + [""] * missing if missing > 0 else cells, strict=False))
        return Recipient(line, (row.get("phone") or "").strip(),
                         {name: value.strip() for name, value in row.items() if name and name != "phone"},
                         (row.get("timezone") or "").strip())

    def close(self) -> None:
        self._handle.close()


def open_recipients(path: Path) -> CsvRecipients:
    """Open the CSV, check its header and count its rows (a quick read: the progress says how many
    from the start); ``BroadcastError`` says what is wrong with the file."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise BroadcastError(f"{path}: cannot read it: {error}") from None
    try:
        start = len(_BOM) if handle.read(len(_BOM)) == _BOM else 0
        lines = _Lines(handle, start)
        handle.seek(start)
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
            fieldnames = [name.strip() for name in header] if header else []  # "name, phone, date"
            if "phone" not in fieldnames:
                raise BroadcastError(f"{path}: the first row must be a header with a 'phone' column "
                                     f"(found: {', '.join(fieldnames) or 'nothing'})")
            first = lines.offset
            rows = sum(1 for cells in reader if cells)
        except (UnicodeDecodeError, csv.Error) as error:
            raise BroadcastError(f"{path}: cannot read it: {error}") from None
        return CsvRecipients(path, handle, fieldnames, first, rows)
    except BaseException:
        handle.close()
        raise


def read_recipients(path: Path, region: str = DEFAULT_REGION) -> list[Recipient]:
    """The CSV's rows as a list (for small files: a broadcast streams them, ``open_recipients``).

    Numbers are read as people write them (``(415) 555-0123``, in ``region`` without a country
    code) and held in E.164; one that cannot be a number is kept as written, for the run to skip."""
    source = open_recipients(path)
    try:
        return [Recipient(recipient.line, _e164_if_possible(recipient.phone, region), recipient.variables,
                          recipient.timezone) for recipient in source.scan()]
    finally:
        source.close()


def _e164_if_possible(text: str, region: str) -> str:
    try:
        return normalise_number(text, region)
    except InvalidNumber:
        return text.strip()
