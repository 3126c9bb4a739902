"""The container's health check: GET /readyz of the node's [http] side, as configured.

Exit 0 when the node is ready (its store answers, both broker links are up, every door
has a consumer), 1 otherwise with one line saying why. Reads the same configuration and
environment as the node, so the port and TLS are never written twice.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from eodes_node.config import load_config
from eodes_node.errors import ConfigError

ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 (a bind address, mapped to loopback)


def readyz_url(config_path: Path) -> tuple[str, ssl.SSLContext | None]:
    """Where the node answers /readyz, and how to trust its certificate if it has one."""
    http = load_config(config_path).http
    if not http.enabled or http.port == 0:
        raise ConfigError("[http] must be enabled on a fixed port for the health check")
    host = "127.0.0.1" if http.host in ANY_ADDRESS else http.host
    if ":" in host:
        host = f"[{host}]"
    if http.tls_cert is None:
        return f"http://{host}:{http.port}/readyz", None
    # The node's own certificate is the trust anchor; the name it was issued for may be any.
    context = ssl.create_default_context(cafile=str(http.tls_cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return f"https://{host}:{http.port}/readyz", context


def check(config_path: Path) -> str | None:
    """None when the node is ready, else why not."""
    try:
        url, context = readyz_url(config_path)
    except (ConfigError, OSError) as exc:
        return str(exc)
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as answer:  # noqa: S310
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except OSError as exc:
        return f"{url} unreachable: {exc}"


def main() -> int:
    config_path = Path(sys.argv[1] if len(sys.argv) > 1 else "/etc/eodes-node/node.toml")
    problem = check(config_path)
    if problem is not None:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
