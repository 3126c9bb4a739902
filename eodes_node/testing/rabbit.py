"""A private RabbitMQ node on spare loopback ports, for tests that hurt the broker.

The shared broker (127.0.0.1:5672) serves everyone on the machine and must never be
stopped, restarted or killed; a fault test or soak starts a node of its own instead.
The node runs as root from /usr/lib/rabbitmq/bin (the /usr/sbin wrappers switch to the
rabbitmq user and its cookie, and could not reach it), listens on 127.0.0.1 only, and
keeps its data under one directory that ``stop`` deletes.

Notes for RabbitMQ 3.10 here: every ``rabbitmqctl`` takes a distribution port in
35672-35682 while it runs, so the node's ports are chosen elsewhere; the node name gets a
random suffix so that two engineers running the same test at once do not collide in epmd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aio_pika

__all__ = ["PrivateRabbit", "RabbitError", "TlsListener"]

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
# epmd, the shared broker's AMQP and distribution ports, and rabbitmqctl's own ports.
RESERVED = frozenset({4369, 5672, 25672, *range(35672, 35683)})
# Below the kernel's ephemeral range (32768+), so no client socket takes a port we reuse.
PORT_RANGE = (20000, 32000)
# How long a restart waits for the ports of the node it restarts to be free again.
PORTS_FREE_S = 30.0
ENV_CONF = (
    'ERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
)


class RabbitError(RuntimeError):
    """A step of running the private node failed; the message names the step."""


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A TLS-only AMQP listener beside the plain one: the broker's certificate and key,
    and the CA its clients' certificates must chain to (a client without one is refused)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def config_lines(self, port: int) -> str:
        return (
            f"listeners.ssl.default = 127.0.0.1:{port}\n"
            f"ssl_options.cacertfile = {self.ca_file}\n"
            f"ssl_options.certfile = {self.cert_file}\n"
            f"ssl_options.keyfile = {self.key_file}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
        )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a listener binds (RabbitMQ's do): the killed node's connections linger in
        # TIME_WAIT for a minute and would make a plain bind say the port is taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def spare_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, outside every range something else may claim."""
    chooser = random.SystemRandom()
    found: list[int] = []
    for _ in range(1000):
        port = chooser.randrange(*PORT_RANGE)
        if port not in RESERVED and port not in found and _bindable(port):
            found.append(port)
            if len(found) == count:
                return found
    raise RabbitError(f"no {count} spare loopback ports found in {PORT_RANGE}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (dead, not yet reaped by init) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class PrivateRabbit:
    """A RabbitMQ node of our own: start, kill -9, restart, stop_app, close connections."""

    def __init__(
        self,
        root: Path,
        name: str = "eodes-private",
        *,
        log_dir: Path | None = None,
        tls: TlsListener | None = None,
    ):
        self.name = f"{name}-{secrets.token_hex(3)}"
        self.dir = root / self.name
        self.log_dir = log_dir or self.dir / "log"
        self.tls = tls
        self._ports: tuple[int, int] | None = None
        self._tls_port: int | None = None
        self._pid: int | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        if self._ports is None:
            raise RabbitError(f"{self.node}: not started, so it has no port yet")
        return self._ports[0]

    @property
    def tls_port(self) -> int:
        """The TLS-only AMQP port (when started with ``tls``)."""
        if self._tls_port is None:
            raise RabbitError(f"{self.node}: has no TLS listener (start it with tls=...)")
        return self._tls_port

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def pid(self) -> int | None:
        """The beam process of the node as last started, if any."""
        return self._pid

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    def tls_url(self, vhost: str = "/", host: str = "127.0.0.1") -> str:
        return f"amqps://guest:guest@{host}:{self.tls_port}/{quote(vhost, safe='')}"

    async def __aenter__(self) -> PrivateRabbit:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, within: float = 90.0) -> None:
        """Choose ports, write the configuration, start the node, wait until AMQP answers."""
        if self._ports is None:
            amqp, dist, *tls = spare_ports(2 if self.tls is None else 3)
            self._ports = (amqp, dist)
            self._tls_port = tls[0] if tls else None
        self._write_files()
        await self._launch(within)

    async def restart(self, within: float = 90.0) -> None:
        """Start again on the same ports and data directory (after kill or a stop)."""
        if self._pid is not None and _alive(self._pid):
            await self.ctl("stop", within=within)
            await self._gone(self._pid, within)
        await self._ports_free(min(within, PORTS_FREE_S))
        await self._launch(within)

    async def _ports_free(self, within: float) -> None:
        """Wait until our ports can be bound again: in CI a port was still taken at once
        after a kill -9, likely while the beam, already a zombie (gone for ``_alive``),
        still had threads exiting with its listeners open."""
        ports = (self.port, self._dist_port, *([self.tls_port] if self.tls else []))
        deadline = time.monotonic() + within
        while taken := [port for port in ports if not _bindable(port)]:
            if time.monotonic() >= deadline:
                raise RabbitError(
                    f"{self.node}: port(s) {taken} still taken {within:.0f} s after it went down"
                )
            await asyncio.sleep(0.1)

    async def ctl(self, *args: str, within: float = 60.0) -> str:
        """``rabbitmqctl -n NODE ARGS``; its standard output, or an error naming the command."""
        command = [CTL, "-n", self.node, *args]
        shown = " ".join(command)
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RabbitError(f"`{shown}` did not finish within {within} s") from None
        if process.returncode != 0:
            tail = (err or out).decode(errors="replace").strip()[-1500:]
            raise RabbitError(f"`{shown}` exited {process.returncode}: {tail}")
        return out.decode(errors="replace")

    async def add_vhost(self, name: str) -> None:
        await self.ctl("add_vhost", name)
        await self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    async def kill(self) -> None:
        """kill -9 of the node's beam process, as a crash or power loss would end it."""
        pid = self._pid
        if pid is None or not _alive(pid):
            raise RabbitError(f"{self.node}: no running beam process to kill")
        os.kill(pid, signal.SIGKILL)
        await self._gone(pid, 30.0)

    async def stop_app(self) -> None:
        await self.ctl("stop_app")

    async def start_app(self, within: float = 60.0) -> None:
        await self.ctl("start_app", within=within)
        await self._amqp_answers(time.monotonic() + within)

    async def close_connections(self, reason: str = "fault") -> int:
        """Close every client connection of every vhost; how many there were."""
        listed = await self.ctl("list_connections", "pid", "--quiet", "--no-table-headers")
        count = sum(1 for line in listed.splitlines() if line.strip().startswith("<"))
        if count:
            await self.ctl("close_all_connections", "--global", reason)
        return count

    async def stop(self) -> None:
        """Stop the node (also after a kill or a failed start) and delete its directory."""
        if self._stopped:
            return
        self._stopped = True
        pid = self._pid or self._pid_from_file()
        if pid is not None and _alive(pid):
            try:
                await self.ctl("stop", within=60.0)
            except RabbitError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await self._gone(pid, 60.0)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- internals -------------------------------------------------------------------

    @property
    def _dist_port(self) -> int:
        assert self._ports is not None
        return self._ports[1]

    @property
    def _pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {
            **os.environ,
            "HOME": os.environ.get("HOME", "/root"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self._pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
        }

    def _write_files(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("")
        config = f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        if self.tls is not None:
            config += self.tls.config_lines(self.tls_port)
        (self.dir / "rabbitmq.conf").write_text(config)
        (self.dir / "rabbitmq-env.conf").write_text(ENV_CONF)

    def _pid_from_file(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self._pid_file.read_text().strip())
        return None

    async def _launch(self, within: float) -> None:
        deadline = time.monotonic() + within
        self._pid_file.unlink(missing_ok=True)
        self._stopped = False
        process = await asyncio.create_subprocess_exec(
            SERVER,
            "-detached",
            env=self._env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if await asyncio.wait_for(process.wait(), within) != 0:
            raise RabbitError(f"{self.node}: `{SERVER} -detached` exited {process.returncode}")
        left = max(1.0, deadline - time.monotonic())
        try:
            await self.ctl("wait", str(self._pid_file), "--timeout", str(int(left)), within=left)
        except RabbitError as error:
            raise RabbitError(f"{self.node} did not start; see {self.log_dir}: {error}") from None
        self._pid = self._pid_from_file()
        await self._amqp_answers(deadline)

    async def _amqp_answers(self, deadline: float) -> None:
        """Poll with a real AMQP connection: the app being up is not the listener being up."""
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                connection = await aio_pika.connect(self.url(), timeout=5)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
                last = error
                await asyncio.sleep(0.2)
                continue
            await connection.close()
            return
        raise RabbitError(f"{self.node}: AMQP on 127.0.0.1:{self.port} did not answer ({last!r})")

    async def _gone(self, pid: int, within: float) -> None:
        deadline = time.monotonic() + within
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RabbitError(f"{self.node}: beam process {pid} still alive after {within} s")
            await asyncio.sleep(0.05)
