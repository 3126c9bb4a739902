"""Parse local records (from the issuing or clearance system) into checked models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, get_args

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import ErrorType

from eodes_node.core.canonical import MAX_DEPTH, TooDeep, canonical_json, check_depth
from eodes_node.core.link import link_problems
from eodes_node.core.messages import (
    BODY_FIELD,
    MODEL_BY_KIND,
    CooIssued,
    CooReplacement,
    Kind,
    MessageBase,
    MessageId,
    new_message_id,
)
from eodes_node.core.models import PATTERN_MEANINGS, Certificate, pattern_of, shown
from eodes_node.core.parts import certificate_parts
from eodes_node.core.rules import check_certificate, check_parts
from eodes_node.errors import InvalidRecord, Problem

M = TypeVar("M", bound=BaseModel)


def too_deep(path: str = "") -> Problem:
    """The one wording for JSON nested beyond any schema, whichever parser noticed it."""
    return Problem(
        path,
        "too_deep",
        f"nested too deeply: records nest objects and arrays a few levels, never more "
        f"than {MAX_DEPTH}",
    )


def _is_branch(part: int | str) -> bool:
    """A union member's name in an error location (``Party``, ``literal['SAME',...]``):
    which alternative failed, not a field of the record."""
    return isinstance(part, str) and (part[:1].isupper() or part.startswith("literal["))


def field_path(loc: Iterable[int | str]) -> str:
    """('items', 0, 'hs_code') -> 'items[0].hs_code', the form developers search for."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_branch(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from(error: ValidationError) -> list[Problem]:
    """Every problem of a validation error in the record's own words: the field path, the
    refused value and what the field takes; never the validation library's wording.

    What only follows from another problem is left out: a list "too short" because some
    of its entries failed (the library counts only the valid ones), and the alternatives
    of a union that the value plainly is not (a JSON object is no 'SAME').
    """
    details = [d for d in error.errors(include_url=False) if not _short_by_failed_entries(d)]
    unions: dict[tuple[int | str, ...], list[ErrorDetails]] = {}
    for detail in details:
        at = _branch_at(detail)
        if at is not None:
            unions.setdefault(detail["loc"][:at], []).append(detail)
    problems: list[Problem] = []
    for detail in details:
        at = _branch_at(detail)
        group = unions.get(detail["loc"][:at]) if at is not None else None
        if group is None:
            problems.append(_problem(detail))
        elif all(_not_this_alternative(d) for d in group):
            if detail is group[0]:  # none of the alternatives: one problem names them all
                problems.append(_none_of(group))
        elif not _not_this_alternative(detail):
            problems.append(_problem(detail))
    return problems


def _short_by_failed_entries(detail: ErrorDetails) -> bool:
    value, ctx = detail.get("input"), detail.get("ctx") or {}
    return (
        detail["type"] == "too_short"
        and isinstance(value, list | tuple)
        and len(value) >= int(ctx.get("min_length", 0))
    )


def _branch_at(detail: ErrorDetails) -> int | None:
    """Where in its location an error names the union alternative that failed."""
    loc = detail["loc"]
    # An unknown field is named by its author: it is never an alternative.
    names = loc[:-1] if detail["type"] == "extra_forbidden" else loc
    return next((i for i, part in enumerate(names) if _is_branch(part)), None)


def _not_this_alternative(detail: ErrorDetails) -> bool:
    """The value is of another JSON type than this alternative takes at all."""
    at = _branch_at(detail)
    if at is None or len(detail["loc"]) != at + 1:
        return False
    value = detail.get("input")
    if detail["type"] == "model_type":
        return not isinstance(value, dict)
    return detail["type"] in {"literal_error", "enum"} and not isinstance(value, str)


def _none_of(group: list[ErrorDetails]) -> Problem:
    first = group[0]
    wanted = [
        "a JSON object"
        if d["type"] == "model_type"
        else f"one of {(d.get('ctx') or {}).get('expected', '')}"
        for d in group
    ]
    return Problem(
        field_path(first["loc"]),
        "not_allowed",
        f"{shown(first.get('input'))} is neither {' nor '.join(wanted)}",
    )


# The validation library's error types, each as (rule, message); {value} is the refused
# value, other names come from the error's context. The custom types raised by the
# models' own validators (country_code, hs_code...) already speak the record's language.
_WORDING: dict[str, tuple[str, str]] = {
    "missing": ("missing", "this field is required"),
    "extra_forbidden": ("unknown_field", "unknown field; the record format does not have it"),
    "model_type": ("not_an_object", "expected a JSON object, got {value}"),
    "model_attributes_type": ("not_an_object", "expected a JSON object, got {value}"),
    "dict_type": ("not_an_object", "expected a JSON object, got {value}"),
    "string_type": ("not_text", "expected text (a JSON string), got {value}"),
    "int_type": ("not_a_whole_number", "expected a whole number, got {value}"),
    "int_parsing": ("not_a_whole_number", "expected a whole number, got {value}"),
    "int_from_float": ("not_a_whole_number", "expected a whole number, got {value}"),
    "int_parsing_size": ("number_too_large", "{value} is too large a number"),
    "bool_type": ("not_true_or_false", "expected true or false, got {value}"),
    "date_type": ("not_a_date", "expected a date written YYYY-MM-DD, got {value}"),
    "date_parsing": ("not_a_date", "{value} is not a date written YYYY-MM-DD"),
    "date_from_datetime_parsing": ("not_a_date", "{value} is not a date written YYYY-MM-DD"),
    "date_from_datetime_inexact": ("not_a_date", "{value} is not a date written YYYY-MM-DD"),
    "datetime_type": (
        "not_a_timestamp",
        "expected a date and time with its UTC offset (RFC 3339), got {value}",
    ),
    "datetime_parsing": (
        "not_a_timestamp",
        "{value} is not a date and time with its UTC offset (RFC 3339)",
    ),
    "datetime_from_date_parsing": (
        "not_a_timestamp",
        "{value} is not a date and time with its UTC offset (RFC 3339)",
    ),
    "timezone_aware": ("not_a_timestamp", "{value} has no UTC offset (write Z or +09:00)"),
    "tuple_type": ("not_a_list", "expected a JSON array, got {value}"),
    "list_type": ("not_a_list", "expected a JSON array, got {value}"),
    "too_short": ("too_few", "needs at least {min_length}, got {count}"),
    "too_long": ("too_many", "takes at most {max_length}, got {count}"),
    "string_too_short": ("empty", "must not be empty"),
    "string_too_long": (
        "text_too_long",
        "{value} is {length} characters long; at most {max_length}",
    ),
    "literal_error": ("not_allowed", "{value} is not one of {expected}"),
    "enum": ("not_allowed", "{value} is not one of {expected}"),
    "greater_than_equal": ("out_of_range", "{value} is below the lowest allowed, {ge}"),
    "greater_than": ("out_of_range", "{value} must be greater than {gt}"),
    "less_than_equal": ("out_of_range", "{value} is above the highest allowed, {le}"),
    "less_than": ("out_of_range", "{value} must be less than {lt}"),
    "value_error": ("inconsistent", "{error}"),
    "assertion_error": ("inconsistent", "{error}"),
}
_FALLBACK = ("not_accepted", "{value} is not accepted here")


def _patterns() -> dict[str, tuple[str, str]]:
    meanings = dict(PATTERN_MEANINGS)
    meanings[pattern_of(MessageId)] = (
        "message_id_format",
        "{value} is not a message id (a UUID in lower case)",
    )
    return meanings


_PATTERNS = _patterns()


# The library's own error types; any other is raised, and worded, by the models' own
# validators (country_code, hs_code...), which already speak the record's language.
_LIBRARY_TYPES = frozenset(get_args(ErrorType))


def _problem(detail: ErrorDetails) -> Problem:
    kind, path = detail["type"], field_path(detail["loc"])
    ctx = _Context(detail.get("ctx") or {})
    value = detail.get("input")
    if kind not in _LIBRARY_TYPES:
        return Problem(path, kind, detail["msg"])
    if kind == "json_invalid":
        error = str(ctx.get("error", "not parseable"))
        if error.startswith("recursion limit exceeded"):
            return too_deep(path)
        return Problem(path, kind, f"the record is not valid JSON: {error}")
    if kind in _WHOLE_NUMBER_TYPES and _beyond_whole_numbers(value):
        rule, template = ("number_too_large", "the number is too large (about {value})")
    elif kind == "string_pattern_mismatch":
        default = ("format", "{value} does not have the form this field takes")
        rule, template = _PATTERNS.get(str(ctx.get("pattern")), default)
    else:
        rule, template = _WORDING.get(kind, _FALLBACK)
    ctx["value"] = shown(value)
    ctx["length"] = len(value) if isinstance(value, str) else 0
    ctx["count"] = _entries(len(value)) if isinstance(value, list | tuple | dict) else ""
    if kind in {"too_short", "too_long"}:
        for bound in ("min_length", "max_length"):
            if bound in ctx:
                ctx[bound] = _entries(int(ctx[bound]))
    ctx["error"] = str(ctx.get("error", "")).removeprefix("Value error, ")
    return Problem(path, rule, template.format_map(ctx))


_WHOLE_NUMBER_TYPES = frozenset({"int_type", "int_parsing", "int_from_float"})


def _beyond_whole_numbers(value: Any) -> bool:
    """A whole number written in JSON beyond 64 bits: the JSON parser reads it as a
    float, which the record's whole-number fields then refuse as not whole."""
    return isinstance(value, float) and value.is_integer() and abs(value) >= 2**63


class _Context(dict[str, Any]):
    """An error's context; a name the library left out reads as "?" rather than failing
    the whole report."""

    def __missing__(self, key: str) -> str:
        return "?"


def _entries(count: int) -> str:
    return "no entries" if count == 0 else f"{count} entr{'y' if count == 1 else 'ies'}"


def parse_model(model: type[M], raw: bytes | str) -> M:
    """Validate JSON text against a model; every structural problem becomes a Problem."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRecord(problems_from(exc)) from None


def parse_certificate(raw: bytes | str) -> Certificate:
    """A certificate that passed both the schema and the agreement's rules; else every
    problem at once, the rules applied to whatever parsed."""
    try:
        cert = parse_model(Certificate, raw)
    except InvalidRecord as exc:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise exc from None
        raise InvalidRecord([*exc.problems, *check_parts(certificate_parts(record))]) from None
    problems = check_certificate(cert)
    if problems:
        raise InvalidRecord(problems)
    return cert


def checked_certificate(cert: Certificate) -> Certificate:
    problems = check_certificate(cert)
    if problems:
        raise InvalidRecord(problems)
    return cert


def as_json_dict(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True, slots=True)
class Composed:
    message: MessageBase
    payload: bytes  # the canonical JSON that was validated: sign exactly these bytes


def compose(
    kind: Kind,
    body: Any,
    *,
    sender: str,
    receiver: str,
    issued_at: datetime,
    message_id: str | None = None,
    correlation_id: str | None = None,
    check_link: bool = True,
) -> Composed:
    """Wrap a local record (already parsed JSON) into a message of ``kind``, keeping the
    validated canonical bytes for signing.

    Problems are reported relative to the record, as its author wrote it; an e-CO's
    agreement rules are applied to whatever parsed of it, so one report holds them all.
    ``check_link=False`` leaves out whether an e-CO belongs on ``sender`` -> ``receiver``.
    """
    field = BODY_FIELD[kind]
    envelope: dict[str, Any] = {
        "kind": kind.value,
        "message_id": message_id or new_message_id(),
        "sender": sender,
        "receiver": receiver,
        "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
        field: body,
    }
    if correlation_id is not None:
        envelope["correlation_id"] = correlation_id
    try:
        check_depth(body)  # before the encoder sees it (see canonical.MAX_DEPTH)
        payload = canonical_json(envelope)
    except TooDeep:
        raise InvalidRecord([too_deep()]) from None
    except TypeError as exc:
        raise InvalidRecord([Problem("", "json_invalid", f"not representable: {exc}")]) from None
    try:
        message = MODEL_BY_KIND[kind].model_validate_json(payload)
    except ValidationError as exc:
        problems = []
        for problem in problems_from(exc):
            path = problem.path
            if path == field or path.startswith((f"{field}.", f"{field}[")):
                path = path[len(field) :].lstrip(".")
            problems.append(Problem(path, problem.rule, problem.message))
        if field == "certificate":
            problems += check_parts(certificate_parts(body))
        raise InvalidRecord(problems) from None
    if isinstance(message, CooIssued | CooReplacement):
        problems = link_problems(message.certificate, sender, receiver) if check_link else []
        problems += check_certificate(message.certificate)
        if problems:
            raise InvalidRecord(problems)
    return Composed(message, payload)
