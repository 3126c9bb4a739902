"""Age a node's store in minutes: clone the rows the real nodes wrote, under new numbers.

Going through the nodes would take hours for a million certificates; what matters to the
store's cost is the rows' number, sizes and keys, so the rows a short real exchange left
(the templates) are copied until the store holds the wanted count. Each copy ``k`` of a
template row gets its own certificate number, its own message ids (UUIDv7 that grow with
the copy's age, or random UUIDv4 as an older partner's), its own history ids, and times
moved into the past, so every index grows as a store that old would have it; signed
tokens are copied as they are (only their size matters here, and nothing verifies them
again). The audit chain of the copies is not recomputed: the aged store is for timing,
not for `eodes-node audit verify`.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# What a node writes per certificate; the outbox is empty once everything is published,
# and verification requests, prune records and leases are not per certificate.
TABLES = (
    "certificates",
    "certificate_history",
    "certificate_index",
    "outbound_messages",
    "inbound_messages",
)
ROW_IDS = {"certificate_history": "id", "certificate_index": "history_id"}
REFERENCES = {"reference_number", "reference_ci"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SECONDS_PER_CERTIFICATE = 30 * 86400 / 280_000  # a busy issuer: 280,000 a month


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


# One cell of a template row that changes per copy: (column, how, what). ``how`` is
# "text" (``what``: literal and template-value parts), "reference", "id" (a row id) or
# "time".
Change = tuple[int, str, Any]


class Cloner:
    """The copies of one store's template rows; copy ``k`` (1, 2, ...) is older than
    copy ``k + 1`` and than every template.

    Each template row is read once into the cells a copy changes, so a copy costs a few
    dictionary look-ups per row, not a regular-expression pass over every cell.
    """

    def __init__(self, tables: Sequence[Table], number_pattern: str, uuid4_ids: bool) -> None:
        self.tables = tables
        self.uuid4_ids = uuid4_ids
        self.values = re.compile(f"({number_pattern})|({UUID.pattern})")
        numbers: set[str] = set()
        self.ids: set[str] = set()
        self.changes: dict[str, list[list[Change]]] = {}
        for table in tables:
            self.changes[table.name] = [self._changes(table, row, numbers) for row in table.rows]
        self.template_numbers = sorted(numbers)
        self.index = {n: i for i, n in enumerate(self.template_numbers)}
        self.id_stride = 1 + max(
            (
                row[t.columns.index(ROW_IDS[t.name])]
                for t in tables
                if t.name in ROW_IDS
                for row in t.rows
            ),
            default=0,
        )
        self.span_s = len(self.template_numbers) * SECONDS_PER_CERTIFICATE

    def _changes(self, table: Table, row: tuple[Any, ...], numbers: set[str]) -> list[Change]:
        changes: list[Change] = []
        for at, (column, value) in enumerate(zip(table.columns, row, strict=True)):
            if column in REFERENCES and isinstance(value, str):
                # A printed reference is unique per certificate; copies must not share one.
                changes.append((at, "reference", value))
            elif isinstance(value, str):
                parts: list[tuple[str, str]] = []
                last = 0
                for match in self.values.finditer(value):
                    parts.append(("", value[last : match.start()]))
                    kind = "number" if match.group(1) else "id"
                    (numbers if kind == "number" else self.ids).add(match.group(0))
                    parts.append((kind, match.group(0)))
                    last = match.end()
                if parts:
                    parts.append(("", value[last:]))
                    changes.append((at, "text", [p for p in parts if p != ("", "")]))
            elif column == ROW_IDS.get(table.name):
                changes.append((at, "id", value))
            elif isinstance(value, float) and (column == "at" or column.endswith("_at")):
                changes.append((at, "time", value))
        return changes

    def message_id(self, template: str, k: int, age_s: float) -> str:
        digest = hashlib.blake2b(f"{template}/{k}".encode(), digest_size=16).digest()
        if self.uuid4_ids:
            return str(uuid.UUID(bytes=digest, version=4))
        millis = int((time.time() - age_s) * 1000)
        value = int.from_bytes(digest, "big") & ((1 << 74) - 1)
        rand_a, rand_b = value >> 62, value & ((1 << 62) - 1)
        return str(
            uuid.UUID(int=(millis << 80) | (0x7 << 76) | (rand_a << 64) | (2 << 62) | rand_b)
        )

    def copy(self, k: int, copies: int) -> Iterator[tuple[Table, list[tuple[Any, ...]]]]:
        """Copy ``k`` of every table's rows (``copies`` in all: copy 1 is the oldest)."""
        age_s = (copies - k + 1) * self.span_s
        new: dict[str, dict[str, str]] = {"": {}} | {
            "number": {n: clone_number(n, k, i) for n, i in self.index.items()},
            "id": {u: self.message_id(u, k, age_s) for u in self.ids},
        }
        shift = k * self.id_stride
        for table in self.tables:
            rows = []
            for row, changes in zip(table.rows, self.changes[table.name], strict=True):
                out = list(row)
                for at, how, what in changes:
                    if how == "text":
                        out[at] = "".join(new[kind][text] if kind else text for kind, text in what)
                    elif how == "id":
                        out[at] = what + shift
                    elif how == "reference":
                        out[at] = f"{what}/{k}"
                    else:
                        out[at] = what - age_s
                rows.append(tuple(out))
            yield table, rows


def read_templates(conn: Any) -> list[Table]:
    """Every row of the per-certificate tables (a DB-API connection, either backend)."""
    tables = []
    for name in TABLES:
        cursor = conn.cursor()
        cursor.execute(f"SELECT * FROM {name}")  # noqa: S608 - one of the names above
        columns = tuple(d[0] for d in cursor.description)
        rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cursor]
        tables.append(Table(name, columns, rows))
    return tables


def clone_number(template: str, k: int, index: int) -> str:
    """Copy ``k`` of the ``index``-th template number: the same length, unique per copy."""
    serial = f"{k:06d}{index:08d}"
    return f"{template[: len(template) - len(serial) - 1]}Z{serial}"


def certificates_in(tables: Sequence[Table]) -> int:
    return next(len(t.rows) for t in tables if t.name == "certificates")


def fill_sqlite(path: str, target: int, number_pattern: str, uuid4_ids: bool) -> int:
    """Clone until the store holds ``target`` certificates; returns the copies made."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")  # 256 MB while filling
        tables = read_templates(db)
        cloner = Cloner(tables, number_pattern, uuid4_ids)
        copies = _copies(target, certificates_in(tables))
        for k in range(1, copies + 1):
            with db:
                for table, rows in cloner.copy(k, copies):
                    marks = ", ".join("?" for _ in table.columns)
                    names = ", ".join(f'"{c}"' for c in table.columns)
                    db.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)  # noqa: S608
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return copies
    finally:
        db.close()


def fill_postgres(dsn: str, target: int, number_pattern: str, uuid4_ids: bool) -> int:
    """The same with COPY, one transaction per copy."""
    import psycopg

    with psycopg.connect(dsn) as db:
        tables = read_templates(db)
        db.commit()
        cloner = Cloner(tables, number_pattern, uuid4_ids)
        copies = _copies(target, certificates_in(tables))
        for k in range(1, copies + 1):
            with db.transaction():
                for table, rows in cloner.copy(k, copies):
                    names = ", ".join(f'"{c}"' for c in table.columns)
                    with db.cursor().copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        # COPY wrote explicit history ids: the live inserts continue after them.
        db.execute(
            "SELECT setval(pg_get_serial_sequence('certificate_history', 'id'), "
            "(SELECT max(id) FROM certificate_history))"
        )
        db.execute("ANALYZE")
        db.commit()
        return copies


def _copies(target: int, templates: int) -> int:
    if templates == 0:
        raise ValueError("the store holds no certificate to clone")
    return max(0, -(-(target - templates) // templates))
