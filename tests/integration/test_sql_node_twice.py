"""A second node process on a store another one runs is refused: one line, non-zero exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eodes_node.testing import NodePair, NodeProcess

pytestmark = pytest.mark.broker


@pytest.mark.timeout(120)
async def test_a_node_started_twice_on_one_store_exits_with_one_line(tmp_path: Path) -> None:
    async with NodePair(tmp_path) as pair:
        config = pair.kr.write_config()
        first = NodeProcess(config, pair.kr.dir / "first")
        second = NodeProcess(config, pair.kr.dir / "second")
        await first.start()
        try:
            with pytest.raises(AssertionError, match="did not start"):
                await second.start(within=60)
            assert second.process is not None
            assert await asyncio.wait_for(second.process.wait(), 30) != 0
            output = (pair.kr.dir / "second.1.log").read_text().strip().splitlines()
            store = pair.kr.dir / "node.db"
            assert len(output) == 1, output
            assert f"store {store} is already in use by pid {first.pid}" in output[0]
            assert first.process is not None
            assert first.process.returncode is None, "the first node was disturbed"
        finally:
            for process in (second, first):
                if process.process is not None and process.process.returncode is None:
                    await process.terminate()
