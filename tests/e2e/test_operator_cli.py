"""The operator's command line against a running node pair: status, list, resend,
replay-dead and events, each run as the real ``eodes-node`` executable."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from eodes_node.config import RetrySection
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, Side
from tests.e2e.test_operator_api import decision, number

pytestmark = pytest.mark.broker

EXE = str(Path(sys.executable).with_name("eodes-node"))


def config_file(side: Side) -> Path:
    """The side's configuration with the HTTP port it actually bound."""
    port = int(side.http_url.rsplit(":", 1)[1])
    side.config = side.config.model_copy(
        update={"http": side.config.http.model_copy(update={"port": port})}
    )
    return side.write_config()


async def cli(*args: str) -> tuple[int, str, str]:
    """Run the command line without blocking the loop the nodes run on."""
    process = await asyncio.create_subprocess_exec(
        EXE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_list_and_events_show_what_happened(tmp_path: Path) -> None:
    async with NodePair(tmp_path, http=True) as pair:
        await pair.start()
        one, two = (as_json_dict(c) for c in SampleFactory("KCFTA", seed=71).certificates(2))
        two["items"] = [two["items"][0], dict(two["items"][0], item_number=2)]
        await pair.kr.submit([one, two])
        await pair.cn.clearance.wait_count(2)
        await pair.cn.submit_feedback(decision(two, {2: "UNIT_MISMATCH"}))
        await pair.kr.issuing.wait_count(1)
        cancellation = {
            "certificate_number": number(one),
            "issuing_authority": one["header"]["issuing_authority"],
            "cancelled_on": one["header"]["issue_date"],
            "reason": "exporter withdrew the application",
        }
        await pair.kr.submit([cancellation], kind="coo-cancellation")
        await pair.cn.clearance.wait_count(3)
        kr = config_file(pair.kr)

        code, out, err = await cli("status", "--config", str(kr), number(two).lower())
        assert code == 0, err
        assert f"certificate {number(two)} (exporter side): partial" in out
        assert "item 2: denied: UNIT_MISMATCH" in out
        assert "item 1: granted" in out

        code, out, _ = await cli("status", "--config", str(kr), number(one))
        assert "cancelled: exporter withdrew the application" in out

        code, out, _ = await cli("status", "--config", str(kr), "--json", number(two))
        (side,) = orjson.loads(out)["sides"]
        assert side["state"] == "partial"

        code, out, _ = await cli("status", "--config", str(kr), "KR1999NOTHERE")
        assert code == 1
        code, out, _ = await cli("list", "--config", str(kr), "--state", "partial")
        assert number(two) in out
        assert number(one) not in out
        assert "1 of 1 certificate(s)" in out
        code, _, err = await cli("list", "--config", str(kr), "--state", "lost")
        assert code == 2
        assert "'lost' is not a state" in err

        code, out, err = await cli("events", "--config", str(kr))
        assert code == 0, err
        assert "delivered" in out
        assert number(two) in out


async def test_resend_and_follow_through_the_running_node(tmp_path: Path) -> None:
    retry = RetrySection(first_after_s=0.2, multiplier=1.0, max_interval_s=0.2, max_attempts=2)
    async with NodePair(tmp_path, http=True, retry=retry) as pair:
        await pair.kr.start()  # CN down: it fails
        (record,) = (as_json_dict(c) for c in SampleFactory("KCFTA", seed=72).certificates(1))
        await pair.kr.submit([record])
        await pair.kr.events.wait_for(lambda _: bool(pair.kr.events.event_items("failed")))
        kr = config_file(pair.kr)
        code, out, err = await cli("list", "--config", str(kr), "--state", "failed")
        assert code == 0, err
        assert number(record) in out

        follower = await asyncio.create_subprocess_exec(
            EXE, "events", "--config", str(kr), "--follow", stdout=asyncio.subprocess.PIPE
        )
        try:
            assert follower.stdout is not None
            first = await asyncio.wait_for(follower.stdout.readline(), 30)
            assert b"failed" in first  # the recent event comes first
            await pair.cn.start()
            code, out, err = await cli("resend", "--config", str(kr), number(record))
            assert code == 0, err
            assert "sent again, the same message again" in out
            delivered: Any = b""
            while b"delivered" not in delivered:
                delivered = await asyncio.wait_for(follower.stdout.readline(), 30)
            assert number(record).encode() in delivered
        finally:
            follower.terminate()
            await follower.wait()
        code, out, err = await cli("replay-dead", "--config", str(kr), "--door", "records")
        assert code == 0, err
        assert "0 dead letter(s) moved back to" in out
        await pair.cn.clearance.wait_count(1)
