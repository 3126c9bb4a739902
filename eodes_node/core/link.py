"""Whether a certificate belongs on the link between two nodes.

A node serves one partner: a certificate exported from another country, consigned to a
third one, or issued under an agreement that does not bind both ends would reach a
clearance system that has no business with it. The sender refuses such a record and
the receiver refuses such a message, with the same problems.
"""

from __future__ import annotations

from eodes_node.core.agreements import AGREEMENTS
from eodes_node.core.models import Certificate
from eodes_node.errors import Problem


def link_problems(cert: Certificate, exporting: str, importing: str) -> list[Problem]:
    """What makes ``cert`` foreign to the link from ``exporting`` to ``importing``."""
    link = f"this link carries certificates exported from {exporting} to {importing}"
    problems = []
    if cert.exporter.country != exporting:
        problems.append(
            Problem(
                "exporter.country",
                "wrong_exporting_country",
                f"the exporter is in {cert.exporter.country}, but {link}",
            )
        )
    if cert.consignee.country != importing:
        problems.append(
            Problem(
                "consignee.country",
                "wrong_importing_country",
                f"the consignee is in {cert.consignee.country}, but {link}",
            )
        )
    agreement = AGREEMENTS.get(cert.header.agreement)
    # An unknown agreement is the rules' problem (agreement_unknown), not the link's.
    if agreement is not None and not {exporting, importing} <= agreement.parties:
        problems.append(
            Problem(
                "header.agreement",
                "agreement_not_for_link",
                f"{agreement.code} does not bind both {exporting} and {importing}; its "
                f"parties are {', '.join(sorted(agreement.parties))}",
            )
        )
    return problems
