"""Key rotation between two running node processes: KR rotates while certificates flow,
then CN does; each side pins the other's new JWK Set and both reload on SIGHUP. Nothing
is lost or refused; then a key KR revoked no longer signs anything CN accepts."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from eodes_node.core.envelope import seal
from eodes_node.core.jws import PrivateKey, b64url_decode_strict
from eodes_node.core.messages import CooIssued, new_message_id
from eodes_node.core.records import as_json_dict
from eodes_node.keyfiles import archive_path
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess, Side

pytestmark = pytest.mark.broker

EXE = str(Path(sys.executable).with_name("eodes-node"))
CHUNK = 8


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


async def cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        EXE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


def own_jwks(side: Side) -> Path:
    return side.dir / f"{side.own.lower()}.jwks.json"


def pin(source: Path, side: Side) -> None:
    """What the partner's operators do with the JWK Set they were sent: replace their
    pinned copy in one rename."""
    scratch = side.config.keys.partner_jwks.with_suffix(".incoming")
    shutil.copyfile(source, scratch)
    os.replace(scratch, side.config.keys.partner_jwks)


def reloads(process: NodeProcess) -> int:
    log = process.log.with_suffix(f".{process.starts}.log")
    return log.read_bytes().count(b'"event":"keys_reloaded"')


async def hang_up(process: NodeProcess) -> None:
    """SIGHUP, then wait until the node says it reloaded."""
    before = reloads(process)
    os.kill(process.pid, signal.SIGHUP)
    await until(lambda: reloads(process) > before, 30, "keys reloaded")


async def rotate(side: Side, node: NodeProcess, partner: Side, partner_node: NodeProcess) -> str:
    """The documented procedure; returns the key that signed before it."""
    old = PrivateKey.from_pem(side.config.keys.private_key.read_bytes()).kid
    await cli("keys", "rotate", "--config", str(side.dir / "node.toml"), "--overlap", "1")
    pin(own_jwks(side), partner)
    await hang_up(partner_node)
    await hang_up(node)
    return old


def kids(side: Side) -> set[str]:
    """The kids of everything the partner pushed to this side."""
    found = set()
    for message in side.wiretap.messages:
        header = b64url_decode_strict(message.body.split(b".")[0], "header")
        found.add(str(orjson.loads(header)["kid"]))
    return found


def numbers(records: list[dict[str, Any]]) -> set[str]:
    return {str(r["header"]["certificate_number"]) for r in records}


@pytest.mark.timeout(300)
async def test_both_sides_rotate_under_traffic_and_a_revoked_key_is_refused(
    tmp_path: Path,
) -> None:
    async with NodePair(tmp_path) as pair:
        kr, cn = pair.kr, pair.cn
        for side, partner in ((kr, cn), (cn, kr)):
            # Each side pins its own copy of what the partner sent, as in a deployment.
            pinned = side.dir / f"pinned-{partner.own.lower()}.jwks.json"
            shutil.copyfile(own_jwks(partner), pinned)
            keys = side.config.keys.model_copy(update={"partner_jwks": pinned})
            side.config = side.config.model_copy(update={"keys": keys})
        kr_node, cn_node = (NodeProcess(s.write_config(), s.dir / "node.log") for s in (kr, cn))
        records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=83).certificates(1200)]
        sent: list[dict[str, Any]] = []
        rotated = asyncio.Event()
        at_rotation = [0]  # how many were sent when both sides had rotated

        async def feed() -> None:
            # Three chunks more once both have rotated, so each new key signs traffic.
            while records and not (rotated.is_set() and len(sent) >= at_rotation[0] + 3 * CHUNK):
                chunk = [records.pop() for _ in range(min(CHUNK, len(records)))]
                await kr.submit(chunk)
                sent.extend(chunk)
                await asyncio.sleep(0.1)

        await cn_node.start()
        await kr_node.start()
        try:
            feeder = asyncio.create_task(feed())
            await cn.clearance.wait_count(CHUNK, 60)
            kr_old = await rotate(kr, kr_node, cn, cn_node)
            cn_old = await rotate(cn, cn_node, kr, kr_node)
            at_rotation[0] = len(sent)
            rotated.set()
            await asyncio.wait_for(feeder, 120)
            assert records, "the traffic ran out before both rotations were done"

            await cn.clearance.wait_for(lambda ms: len(ms) >= len(sent), 120)
            await kr.events.wait_for(
                lambda _: kr.events.certificates_with("delivered") >= numbers(sent), 120
            )
            cleared = {
                str(m["certificate"]["header"]["certificate_number"]) for m in cn.clearance.json()
            }
            assert cleared == numbers(sent)
            assert kr.events.certificates_with("delivered") == numbers(sent)
            assert kr.events.event_items("record_rejected") == []
            for side in (kr, cn):
                assert side.dead[side.topology.inbound_queue].messages == []
            kr_new = PrivateKey.from_pem(kr.config.keys.private_key.read_bytes()).kid
            cn_new = PrivateKey.from_pem(cn.config.keys.private_key.read_bytes()).kid
            # Both keys of each side really signed traffic the other accepted.
            assert {kr_old, kr_new} <= kids(cn)
            assert {cn_old, cn_new} <= kids(kr)

            await cli("keys", "revoke", "--config", str(kr.dir / "node.toml"), "--", kr_old)
            pin(own_jwks(kr), cn)
            await hang_up(cn_node)
            old_key = PrivateKey.from_pem(
                archive_path(kr.config.keys.private_key, kr_old).read_bytes()
            )
            forged = CooIssued(
                message_id=new_message_id(),
                sender="KR",
                receiver="CN",
                issued_at=datetime.now(UTC).replace(microsecond=0),
                certificate=SampleFactory("KCFTA", seed=84).certificate(),
            )
            await cn.inject(seal(forged, old_key), kind="coo", message_id=forged.message_id)
            dead = await cn.dead[cn.topology.inbound_queue].wait_count(1, 30)
            assert "KEY_NOT_VALID" in str(dead[0].headers["x-eodes-reason"])
            assert forged.certificate.header.certificate_number not in {
                str(m["certificate"]["header"]["certificate_number"]) for m in cn.clearance.json()
            }
        finally:
            codes = [await p.terminate() for p in (kr_node, cn_node) if p.process is not None]
        assert codes == [0, 0]
