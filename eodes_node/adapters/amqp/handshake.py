"""Why a link failed before AMQP began, when TLS is the cause: one line an operator acts on.

A broker that refuses our client certificate (expired, from a CA it does not trust,
missing) does so after a TLS 1.3 handshake has completed on our side; the alert that says
why is lost when the broker resets the connection that our AMQP header then reaches. So a
reset there is asked again on a second connection that only listens, which hears the
alert. A plain AMQP client on a TLS-only port gets a reset too; asked again, the port
answers the AMQP header with a TLS alert record.

Each refusal recognised is ``BrokerRefused``: a configuration error, which no retry
cures. A TLS failure not recognised is left to the retries, as any broker trouble is.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator

from yarl import URL

from eodes_node.broker_tls import LinkTls
from eodes_node.errors import BrokerRefused

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
TLS_RECORDS = (b"\x15\x03", b"\x16\x03")  # an alert or a handshake record, any TLS version
CLIENT_CERTIFICATE_ALERTS = {
    "certificate_expired": "it has expired",
    "unknown_ca": "it is not signed by a CA the broker trusts",
    "bad_certificate": "the broker finds it bad",
    "certificate_revoked": "it has been revoked",
    "unsupported_certificate": "the broker does not accept its kind",
    "certificate_unknown": "the broker cannot use it",
    "access_denied": "the broker denies it access",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _alert(error: ssl.SSLError) -> str | None:
    """The TLS alert the peer sent, as named in RFC 8446 (``certificate_expired``)."""
    reason = error.reason or ""
    _, found, name = reason.partition("ALERT_")
    return name.lower() if found else None


async def tls_refusal(
    url: str, tls: LinkTls | None, context: ssl.SSLContext | None, exc: BaseException, within: float
) -> BrokerRefused | None:
    """The broker's refusal of the link's TLS, or of the lack of it; None if not that."""
    where = URL(url)
    broker = f"the broker at {where.with_password(None)}"
    host, port = where.host or "", where.port or 0
    chain = list(_chain(exc))
    if any(isinstance(e, ConnectionRefusedError | TimeoutError) for e in chain):
        return None  # nothing listens, or nothing answers: down, not refusing
    if tls is None or context is None:
        if await _speaks_tls(host, port, within):
            return BrokerRefused(
                f"{broker}: port {port} speaks TLS only, and this link is plain AMQP: use an "
                "amqps:// URL (with the broker's CA and our client certificate)"
            )
        return None
    errors = [e for e in chain if isinstance(e, ssl.SSLError)]
    if not errors:
        heard = await _listen(host, port, context, within)
        errors = [heard] if heard is not None else []
    return _explained(broker, port, tls, errors[0]) if errors else None


def _explained(broker: str, port: int, tls: LinkTls, error: ssl.SSLError) -> BrokerRefused | None:
    ca = f"the CA in {tls.ca_file}" if tls.ca_file else "the system's trust store"
    if isinstance(error, ssl.SSLCertVerificationError):
        return BrokerRefused(
            f"{broker}: its certificate is not trusted: {error.verify_message.rstrip('.')} "
            f"(checked with "
            f"{ca}, for the name {tls.server_name!r}); {tls.setting('tls_ca')} must be the CA "
            f"that signed it, {tls.setting('tls_server_name')} the name it was issued for"
        )
    alert = _alert(error)
    cert = tls.cert_file
    if alert in CLIENT_CERTIFICATE_ALERTS and cert is not None:
        return BrokerRefused(
            f"{broker} refused our client certificate {cert}: "
            f"{CLIENT_CERTIFICATE_ALERTS[alert]} (TLS alert {alert})"
        )
    if alert in ("certificate_required", "handshake_failure") and cert is None:
        return BrokerRefused(
            f"{broker} demands a client certificate (TLS alert {alert}): set "
            f"{tls.setting('tls_cert')} and {tls.setting('tls_key')}"
        )
    if alert == "protocol_version":
        return BrokerRefused(
            f"{broker} speaks no TLS version we allow (TLS alert protocol_version; "
            f"{tls.setting('tls_min_version')} = {tls.min_version})"
        )
    if error.reason == "WRONG_VERSION_NUMBER":
        return BrokerRefused(
            f"{broker}: port {port} does not speak TLS: is it the plain AMQP port? "
            "(TLS is on for this link: amqps:// URL or "
            f"{tls.setting('tls')} = true)"
        )
    # Anything else (internal_error, decode_error, a reset from a broker or a load balancer
    # still starting) is the broker's trouble, not our configuration: retried, not fatal.
    return None


async def _listen(
    host: str, port: int, context: ssl.SSLContext, within: float
) -> ssl.SSLError | None:
    """Handshake, then only listen: the broker says nothing before our AMQP header, so
    what comes is its alert. None when it says nothing within ``within``."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), within
        )
    except ssl.SSLError as error:
        return error
    except (OSError, TimeoutError):
        return None
    try:
        await asyncio.wait_for(reader.read(1), within)
    except ssl.SSLError as error:
        return error
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), within)
    return None


async def _speaks_tls(host: str, port: int, within: float) -> bool:
    """Whether the port answers an AMQP header with a TLS record."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(AMQP_HEADER)
        answer = await asyncio.wait_for(reader.read(8), within)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), within)
    return answer.startswith(TLS_RECORDS)
