"""A private RabbitMQ cluster of three nodes on spare loopback ports, for tests of a broker
member dying under a running node. The shared broker is never touched.

Each member is a ``PrivateRabbit``; the second and third join the first
(``stop_app``, ``join_cluster``, ``start_app``). They share root's default Erlang cookie
(~/.erlang.cookie), which is what lets them talk.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from eodes_node.testing.rabbit import PrivateRabbit, RabbitError

__all__ = ["PrivateCluster"]


class PrivateCluster:
    """Three ``PrivateRabbit`` members clustered together; ``stop`` removes them all."""

    def __init__(self, root: Path, size: int = 3, name: str = "eodes-cluster") -> None:
        if size < 2:
            raise ValueError("a cluster has at least two members")
        self.members = [PrivateRabbit(root, f"{name}{index}") for index in range(1, size + 1)]

    @property
    def first(self) -> PrivateRabbit:
        return self.members[0]

    def urls(self, vhost: str = "/") -> list[str]:
        """Every member's URL of ``vhost``, in member order."""
        return [member.url(vhost) for member in self.members]

    def member_on(self, port: int) -> PrivateRabbit:
        for member in self.members:
            if member.port == port:
                return member
        raise RabbitError(f"no member of the cluster listens on port {port}")

    async def __aenter__(self) -> PrivateCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, within: float = 180.0) -> None:
        """Start every member, join the others to the first, and wait until the first
        lists all of them running."""
        deadline = time.monotonic() + within
        for member in self.members:  # one at a time: two cores, and each boot is heavy
            await member.start(within=max(1.0, deadline - time.monotonic()))
        for member in self.members[1:]:
            await member.stop_app()
            await member.ctl("join_cluster", self.first.node)
            await member.start_app(within=max(1.0, deadline - time.monotonic()))
        await self.wait_running(len(self.members), deadline)

    async def running(self, via: PrivateRabbit | None = None) -> list[str]:
        """The members the cluster says are running, asked of ``via`` (the first)."""
        out = await (via or self.first).ctl("cluster_status", "--formatter", "json")
        return list(json.loads(out).get("running_nodes", []))

    async def wait_running(self, count: int, deadline: float) -> None:
        last: list[str] = []
        while time.monotonic() < deadline:
            last = await self.running()
            if len(last) >= count:
                return
            await asyncio.sleep(0.5)
        raise RabbitError(f"the cluster runs {last}, not {count} members")

    async def add_vhost(self, name: str) -> None:
        """A vhost of the whole cluster: created once, it exists on every member."""
        await self.first.add_vhost(name)

    async def stop(self) -> None:
        for member in reversed(self.members):
            await member.stop()
