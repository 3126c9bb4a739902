"""Parse local records (from the issuing or clearance system) into checked models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from eodes_node.core.canonical import MAX_DEPTH, TooDeep, canonical_json, check_depth
from eodes_node.core.link import link_problems
from eodes_node.core.messages import (
    BODY_FIELD,
    MODEL_BY_KIND,
    CooIssued,
    CooReplacement,
    Kind,
    MessageBase,
    new_message_id,
)
from eodes_node.core.models import Certificate
from eodes_node.core.rules import check_certificate
from eodes_node.errors import InvalidRecord, Problem

M = TypeVar("M", bound=BaseModel)

_MESSAGES = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field; the record format does not have it",
    "json_invalid": "the record is not valid JSON",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
}


def too_deep(path: str = "") -> Problem:
    """The one wording for JSON nested beyond any schema, whichever parser noticed it."""
    return Problem(
        path,
        "too_deep",
        f"nested too deeply: records nest objects and arrays a few levels, never more "
        f"than {MAX_DEPTH}",
    )


def field_path(loc: Iterable[int | str]) -> str:
    """('items', 0, 'hs_code') -> 'items[0].hs_code', the form developers search for."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"Party", "literal['SAME','AVAILABLE UPON REQUEST']"}:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from(error: ValidationError) -> list[Problem]:
    return [_problem(detail) for detail in error.errors(include_url=False)]


def _problem(detail: ErrorDetails) -> Problem:
    kind = detail["type"]
    message = _MESSAGES.get(kind, detail["msg"])
    if kind == "json_invalid":
        error = str(detail.get("ctx", {}).get("error", detail["msg"]))
        if error.startswith("recursion limit exceeded"):
            return too_deep(field_path(detail["loc"]))
        message = f"{message}: {error}"
    return Problem(field_path(detail["loc"]), kind, message)


def parse_model(model: type[M], raw: bytes | str) -> M:
    """Validate JSON text against a model; every structural problem becomes a Problem."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRecord(problems_from(exc)) from None


def parse_certificate(raw: bytes | str) -> Certificate:
    """A certificate that passed both the schema and the agreement's rules."""
    cert = parse_model(Certificate, raw)
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
) -> Composed:
    """Wrap a local record (already parsed JSON) into a message of ``kind``, keeping the
    validated canonical bytes for signing.

    Problems are reported relative to the record, as its author wrote it.
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
        raise InvalidRecord(problems) from None
    if isinstance(message, CooIssued | CooReplacement):
        problems = link_problems(message.certificate, sender, receiver)
        problems += check_certificate(message.certificate)
        if problems:
            raise InvalidRecord(problems)
    return Composed(message, payload)
