"""Which samples `eodes-node sample` prints: the direction of trade, the agreement, and
the certificates a cancellation or a feedback refers to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from eodes_node.core.models import Certificate
from eodes_node.core.records import as_json_dict
from eodes_node.samples.factory import SampleFactory, link_agreement

SampleKind = Literal["coo", "cancellation", "feedback"]
SAMPLE_KINDS: tuple[SampleKind, ...] = ("coo", "cancellation", "feedback")


def factory_for(
    kind: SampleKind,
    *,
    agreement: str | None,
    exporter: str | None,
    importer: str | None,
    link: tuple[str, str] | None,
    seed: int | None,
    issue_date: date | None,
) -> SampleFactory:
    """A factory for ``kind`` records; ValueError naming what contradicts what.

    With a node's link (own, partner), e-COs and cancellations go from us to the partner,
    and feedback concerns certificates the partner sent us; the agreement defaults to
    the one that binds the two countries.
    """
    if link is not None:
        own, partner = link
        wanted = (partner, own) if kind == "feedback" else (own, partner)
        for option, given, expected in (
            ("--exporter", exporter, wanted[0]),
            ("--importer", importer, wanted[1]),
        ):
            if given is not None and given != expected:
                raise ValueError(
                    f"{option} {given} contradicts the config's link: {kind} records on it "
                    f"concern certificates exported from {wanted[0]} to {wanted[1]}"
                )
        exporter, importer = wanted
        agreement = agreement or link_agreement(exporter, importer)
    return SampleFactory(
        agreement or "KCFTA",
        exporter=exporter,
        importer=importer,
        seed=seed,
        issue_date=issue_date,
    )


def sample_records(
    kind: SampleKind,
    factory: SampleFactory,
    count: int,
    refer_to: Sequence[Certificate] | None = None,
) -> list[dict[str, Any]]:
    """``count`` records of ``kind``. A cancellation or feedback refers to the certificates
    given, else to the ones the same factory settings print as e-COs (same seed, same
    certificates), so `sample --seed 5` and `sample --type feedback --seed 5` match."""
    if kind == "coo":
        return [as_json_dict(factory.certificate()) for _ in range(count)]
    certificates = list(refer_to) if refer_to is not None else factory.certificates(count)
    if kind == "cancellation":
        return [as_json_dict(factory.cancellation(cert)) for cert in certificates]
    return [as_json_dict(factory.feedback(cert)) for cert in certificates]
