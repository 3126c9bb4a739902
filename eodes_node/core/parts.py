"""What parsed of an e-CO record that did not parse whole, for the agreement rules.

Each field the rules read is validated on its own, with the type the model gives it, from
the JSON the author wrote; a field that fails stays ``None`` and no rule reads it. So a
record with a schema error still hears, in the same report, what the agreement says of
its other fields: an item that parsed is checked even when the header has an error.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from eodes_node.core.canonical import TooDeep, check_depth
from eodes_node.core.models import (
    BackReference,
    Certification,
    Declaration,
    Header,
    Item,
    Party,
    Transport,
)
from eodes_node.core.rules import Parts

_ABSENT = object()


def _field(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """The field's type with its constraints, as the model validates it."""
    return TypeAdapter(model.model_fields[name].rebuild_annotation())


_NUMBER = _field(Header, "certificate_number")
_AGREEMENT = _field(Header, "agreement")
_ISSUE_DATE = _field(Header, "issue_date")
_VALID_UNTIL = _field(Header, "valid_until")
_RETROACTIVE = _field(Header, "issued_retroactively")
_COUNTRY = _field(Party, "country")
_DEPARTURE = _field(Transport, "departure_date")
_DECLARED = _field(Declaration, "date")
_CERTIFIED = _field(Certification, "date")
_ITEM = TypeAdapter(Item)
_BACK_REFERENCE = TypeAdapter(BackReference)


def _parsed(adapter: TypeAdapter[Any], value: Any) -> Any:
    """``value`` validated as the model would (strictly, from JSON), else None."""
    if value is _ABSENT:
        return None
    try:
        return adapter.validate_json(orjson.dumps(value), strict=True)
    except (ValidationError, TypeError, orjson.JSONEncodeError):
        return None


def _at(record: Any, *path: str) -> Any:
    """The JSON value at ``path``, or ``_ABSENT`` where there is none."""
    for name in path:
        if not isinstance(record, dict) or name not in record:
            return _ABSENT
        record = record[name]
    return record


def _retroactive_flag(record: Any) -> Any:
    """The flag as written, or its default when a header omits it."""
    header = _at(record, "header")
    flag = _at(header, "issued_retroactively")
    return False if flag is _ABSENT and isinstance(header, dict) else _parsed(_RETROACTIVE, flag)


def named_certificate_number(raw: bytes) -> str | None:
    """The certificate number a record names (an e-CO in its header, the others at the
    top), when that field parses; for the log lines and events about a refused record."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    named = _at(record, "header", "certificate_number")
    number = _parsed(_NUMBER, _at(record, "certificate_number") if named is _ABSENT else named)
    return number if isinstance(number, str) else None


def certificate_parts(record: Any) -> Parts:
    """What parsed of an e-CO record given as JSON values (an object, as loaded)."""
    try:
        check_depth(record)  # before the encoder sees any part (see canonical.MAX_DEPTH)
    except TooDeep:
        return Parts()
    items = _at(record, "items")
    entries = items if isinstance(items, list) else []
    parsed_items = ((index, _parsed(_ITEM, entry)) for index, entry in enumerate(entries))
    return Parts(
        number=_parsed(_NUMBER, _at(record, "header", "certificate_number")),
        agreement=_parsed(_AGREEMENT, _at(record, "header", "agreement")),
        issue_date=_parsed(_ISSUE_DATE, _at(record, "header", "issue_date")),
        valid_until=_parsed(_VALID_UNTIL, _at(record, "header", "valid_until")),
        issued_retroactively=_retroactive_flag(record),
        issuing_country=_parsed(_COUNTRY, _at(record, "header", "issuing_authority", "country")),
        exporter_country=_parsed(_COUNTRY, _at(record, "exporter", "country")),
        consignee_country=_parsed(_COUNTRY, _at(record, "consignee", "country")),
        departure_date=_parsed(_DEPARTURE, _at(record, "transport", "departure_date")),
        item_count=len(items) if isinstance(items, list) else None,
        items=tuple((index, item) for index, item in parsed_items if item is not None),
        declaration_date=_parsed(_DECLARED, _at(record, "exporter_declaration", "date")),
        certification_date=_parsed(_CERTIFIED, _at(record, "certification", "date")),
        back_reference=_parsed(_BACK_REFERENCE, _at(record, "back_reference")),
    )
