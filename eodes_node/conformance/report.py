"""The kit's results for people and for CI: a table, one summary line, a JUnit XML file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence

from eodes_node.conformance.verdict import Outcome

_MARK = {"pass": "pass", "fail": "FAIL", "skip": "skip"}


def table(outcomes: Sequence[Outcome]) -> str:
    """One line per case: name, expected, got, result; the reason under each failure."""
    rows = [("case", "expected", "got", "result")]
    rows += [(o.name, o.expected, o.got, _MARK[o.status]) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
        outcome = outcomes[index - 1] if index else None
        if outcome is not None and outcome.status != "pass" and outcome.detail:
            lines.append(f"    {outcome.detail}")
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome], node: str) -> str:
    counts = Counter(o.status for o in outcomes)
    return (
        f"conformance of {node}: {len(outcomes)} cases, {counts['pass']} passed, "
        f"{counts['fail']} failed, {counts['skip']} skipped"
    )


def junit(outcomes: Sequence[Outcome], node: str, seconds: float) -> bytes:
    """JUnit XML as CI systems read it: one testsuite, a testcase per case."""
    counts = Counter(o.status for o in outcomes)
    suite = ET.Element(
        "testsuite",
        name=f"eodes-conformance {node}",
        tests=str(len(outcomes)),
        failures=str(counts["fail"]),
        skipped=str(counts["skip"]),
        errors="0",
        time=f"{seconds:.3f}",
    )
    for outcome in outcomes:
        case = ET.SubElement(
            suite, "testcase", classname=f"conformance.{outcome.group}", name=outcome.name
        )
        if outcome.status == "fail":
            failure = ET.SubElement(
                case, "failure", message=f"expected {outcome.expected}, got {outcome.got}"
            )
            failure.text = f"{outcome.title}: {outcome.detail}"
        elif outcome.status == "skip":
            ET.SubElement(case, "skipped", message=outcome.detail)
        ET.SubElement(case, "system-out").text = outcome.title
    suites = ET.Element("testsuites")
    suites.append(suite)
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))
