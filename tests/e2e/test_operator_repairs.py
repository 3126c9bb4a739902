"""The two repairs end to end over HTTP, and the metrics and events they show.

The re-send flow: a key mix-up makes the partner reject a certificate; the partner fixes
its pinned JWK Set; the operator re-sends; the certificate is delivered, and reaches the
clearance system exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from eodes_node.config import KeysSection, RetrySection
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair
from tests.e2e.http_client import api
from tests.e2e.test_operator_api import CHECKED, number, until

pytestmark = pytest.mark.broker


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})?", sample)
        if found and ",".join(sorted((found.group(1) or "").split(","))) == wanted:
            return float(value)
    return 0.0


async def test_key_mixup_rejected_then_resent_after_the_fix_is_delivered_once(
    tmp_path: Path,
) -> None:
    async with NodePair(tmp_path, http=True) as pair:
        right = pair.cn.config.keys
        stranger = tmp_path / "stranger.jwks.json"
        key = PrivateKey.generate("Ed25519")
        stranger.write_bytes(orjson.dumps(KeySet({key.kid: key.public}).to_jwks()))
        # The mix-up: CN pinned someone else's key for KR.
        pair.cn.config = pair.cn.config.model_copy(
            update={"keys": KeysSection(private_key=right.private_key, partner_jwks=stranger)}
        )
        await pair.start()
        (record,) = (as_json_dict(c) for c in SampleFactory("KCFTA", seed=61).certificates(1))
        cert = number(record)
        await pair.kr.submit([record])
        await pair.kr.events.wait_for(lambda _: bool(pair.kr.events.event_items("rejected")))
        (rejection,) = pair.kr.events.event_items("rejected")
        assert rejection["code"] == "UNKNOWN_KEY"

        async with api(pair.kr.http_url, CHECKED) as client:
            token = pair.kr.operator_token
            _, detail, _ = await client.call("GET", f"/api/v1/certificates/{cert}", token=token)
            (side,) = detail["sides"]
            assert side["state"] == "rejected"
            (sent,) = side["messages"]
            assert (sent["status"], sent["code"]) == ("rejected", "UNKNOWN_KEY")
            assert "not among" in sent["text"] or sent["text"]

            # The partner fixes its JWK Set and restarts.
            await pair.cn.stop()
            pair.cn.config = pair.cn.config.model_copy(update={"keys": right})
            await pair.cn.start()

            status, outcome, _ = await client.call(
                "POST", f"/api/v1/certificates/{cert.lower()}/resend", token=token
            )
            assert status == 202, outcome
            assert outcome["certificate_number"] == cert
            assert outcome["same_message"] is False
            assert outcome["message_id"] != sent["message_id"]

            async def settled() -> Any:
                _, d, _ = await client.call("GET", f"/api/v1/certificates/{cert}", token=token)
                return d if d["sides"][0]["state"] == "delivered" else None

            (after,) = (await until(settled))["sides"]
            assert [(m["message_id"], m["status"]) for m in after["messages"]] == [
                (sent["message_id"], "rejected"),
                (outcome["message_id"], "delivered"),
            ]
            assert [h["event"] for h in after["history"]] == [
                "submitted",
                "receipt_rejected",
                "resent",
                "receipt_accepted",
            ]
            assert after["coo_message_id"] == outcome["message_id"]

            # A second re-send is refused: it is delivered now.
            status, _, _ = await client.call(
                "POST", f"/api/v1/certificates/{cert}/resend", token=token
            )
            assert status == 409

            _, text, _ = await client.call("GET", "/metrics")
            page = text.decode()
            assert metric(page, "eodes_operator_resends_total") == 1
            assert metric(page, "eodes_rejections_total", code="UNKNOWN_KEY", by="partner") == 1
            assert metric(page, "eodes_messages_out_total", kind="coo", status="delivered") == 1

        # Exactly once at clearance, and it is the re-sent message.
        cleared = await pair.cn.clearance.wait_count(1)
        assert len(cleared) == 1
        assert cleared[0].message_id == outcome["message_id"]
        assert {m.message_id for m in pair.cn.clearance.messages} == {outcome["message_id"]}


async def test_failed_certificate_is_resent_as_the_same_message(tmp_path: Path) -> None:
    retry = RetrySection(first_after_s=0.2, multiplier=1.0, max_interval_s=0.2, max_attempts=2)
    async with NodePair(tmp_path, http=True, retry=retry) as pair:
        await pair.kr.start()  # CN is down: no receipt comes, the certificate fails
        (record,) = (as_json_dict(c) for c in SampleFactory("KCFTA", seed=62).certificates(1))
        cert = number(record)
        await pair.kr.submit([record])
        await pair.kr.events.wait_for(lambda _: bool(pair.kr.events.event_items("failed")))
        await pair.cn.start()
        async with api(pair.kr.http_url, CHECKED) as client:
            token = pair.kr.operator_token

            async def side() -> Any:
                _, d, _ = await client.call("GET", f"/api/v1/certificates/{cert}", token=token)
                return d["sides"][0]

            failed = await side()
            assert failed["state"] == "failed"
            (first,) = failed["messages"]
            assert (first["status"], first["code"]) == ("failed", "RETRIES_EXHAUSTED")
            status, outcome, _ = await client.call(
                "POST", f"/api/v1/certificates/{cert}/resend", token=token
            )
            assert status == 202
            assert outcome["same_message"] is True
            assert outcome["message_id"] == first["message_id"]

            async def delivered() -> Any:
                now = await side()
                return now if now["state"] == "delivered" else None

            after = await until(delivered)
            assert [m["message_id"] for m in after["messages"]] == [first["message_id"]]
        cleared = await pair.cn.clearance.wait_count(1)
        assert [m.message_id for m in cleared] == [first["message_id"]]


async def test_dead_lettered_record_is_replayed_after_the_fix(tmp_path: Path) -> None:
    async with NodePair(tmp_path, http=True, consume_dead_letters=False) as pair:
        await pair.start()
        (record,) = (as_json_dict(c) for c in SampleFactory("KCFTA", seed=63).certificates(1))
        cancellation = {
            "certificate_number": number(record),
            "issuing_authority": record["header"]["issuing_authority"],
            "cancelled_on": record["header"]["issue_date"],
            "reason": "issued in error",
        }
        # A cancellation before its certificate: refused and dead-lettered.
        await pair.kr.submit([cancellation], kind="coo-cancellation")
        records_queue = pair.kr.topology.outbound_records
        await pair.kr.events.wait_for(lambda _: bool(pair.kr.events.event_items("record_rejected")))
        # The issuing system fixes it: the certificate goes first.
        await pair.kr.submit([record])
        await pair.cn.clearance.wait_count(1)
        async with api(pair.kr.http_url, CHECKED) as client:
            status, outcome, _ = await client.call(
                "POST",
                "/api/v1/dead-letters/records/replay",
                token=pair.kr.operator_token,
                json={"limit": 10},
            )
        assert status == 200
        assert outcome == {"door": "records", "queue": records_queue, "moved": 1}
        cleared = await pair.cn.clearance.wait_count(2)
        assert [m.type for m in cleared] == ["coo", "coo-cancellation"]
        reason = orjson.loads(cleared[1].body)["cancellation"]["reason"]
        assert reason == "issued in error"
