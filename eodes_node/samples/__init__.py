"""Realistic sample records: certificates, their replacements and cancellations, and the
importing customs' feedback. Used by `eodes-node sample`, the demo, the benchmarks, the
conformance kit and the tests."""

from __future__ import annotations

from eodes_node.samples.factory import SampleFactory, link_agreement

__all__ = ["SampleFactory", "link_agreement"]
