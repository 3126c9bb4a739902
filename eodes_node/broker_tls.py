"""TLS on the two broker links: the [broker] settings, their checks, the client context.

Each link (``local``: our own broker; ``partner``: the partner's) is TLS when its URL is
``amqps://`` or ``<link>_tls = true``. The broker's certificate is always verified, its
name checked (``<link>_tls_server_name``, by default the URL's host), and nothing older
than TLS 1.2 is spoken. A client certificate (``<link>_tls_cert`` with ``<link>_tls_key``,
the key readable by its owner alone) is presented when configured; a broker that demands
one refuses the link without it. Everything is checked, files read, when the
configuration loads: a bad setting stops the node at start-up with one line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from eodes_node.errors import ConfigError

__all__ = ["LINKS", "BrokerTlsFields", "LinkTls", "tls_url"]

LINKS = ("local", "partner")
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
# The fields of one link, each prefixed with ``<link>_`` in the [broker] section.
FILE_FIELDS = ("tls_ca", "tls_cert", "tls_key")


class _ServerNameContext(ssl.SSLContext):
    """A client context that checks the broker's certificate against one configured name,
    whatever host the connection was opened to (aio-pika passes no server name through)."""

    server_name: str

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def _encrypted_key() -> bytes:
    raise ConfigError("is encrypted: the node needs the key unencrypted, in a file of mode 0600")


@dataclass(frozen=True, slots=True)
class LinkTls:
    """TLS of one link as configured; ``context`` reads the files."""

    link: str
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    server_name: str
    min_version: str

    def setting(self, field: str) -> str:
        return f"broker.{self.link}_{field}"

    def context(self) -> ssl.SSLContext:
        """The client context; a ``ConfigError`` naming the setting when a file is unusable."""
        context = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = self.server_name
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        context.minimum_version = MIN_VERSIONS[self.min_version]
        if self.ca_file is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            self._load_ca(context, self.ca_file)
        if self.cert_file is not None and self.key_file is not None:
            self._load_pair(context, self.cert_file, self.key_file)
        return context

    def _load_ca(self, context: ssl.SSLContext, path: Path) -> None:
        where = f"{self.setting('tls_ca')}: {path}"
        if PEM_CERTIFICATE not in _read(path, where):
            raise ConfigError(f"{where} is not a PEM CA bundle (no BEGIN CERTIFICATE block)")
        try:
            context.load_verify_locations(cafile=str(path))
        except ssl.SSLError as exc:
            raise ConfigError(f"{where} is not a usable PEM CA bundle: {exc.reason}") from None

    def _load_pair(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        cert_where = f"{self.setting('tls_cert')}: {cert}"
        key_where = f"{self.setting('tls_key')}: {key}"
        if PEM_CERTIFICATE not in _read(cert, cert_where):
            raise ConfigError(f"{cert_where} is not a PEM certificate")
        _read(key, key_where)
        try:
            context.load_cert_chain(cert, key, password=_encrypted_key)
        except ConfigError as exc:
            raise ConfigError(f"{key_where} {exc}") from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{cert_where} and {key} do not make a certificate and its key "
                f"({exc.reason}): is the key PEM, and the one the certificate was issued for?"
            ) from None


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None


class BrokerTlsFields(BaseModel):
    """The TLS settings of both links, mixed into the [broker] section."""

    # None: TLS when the URL is amqps://. True with an amqp:// URL connects with TLS.
    local_tls: bool | None = None
    local_tls_ca: Path | None = None  # PEM CA bundle; none: the system's trust store
    local_tls_cert: Path | None = None  # PEM client certificate (chain)
    local_tls_key: Path | None = None  # its PEM key, mode 0600
    local_tls_server_name: str | None = Field(default=None, min_length=1)
    local_tls_min_version: Literal["1.2", "1.3"] = "1.2"
    partner_tls: bool | None = None
    partner_tls_ca: Path | None = None
    partner_tls_cert: Path | None = None
    partner_tls_key: Path | None = None
    partner_tls_server_name: str | None = Field(default=None, min_length=1)
    partner_tls_min_version: Literal["1.2", "1.3"] = "1.2"

    @field_validator("local_tls_min_version", "partner_tls_min_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        """TOML reads ``1.2`` unquoted as a number; anything below 1.2 is refused by name."""
        text = str(value) if isinstance(value, float | int) else value
        if isinstance(text, str) and text.removeprefix("TLSv") in ("1", "1.0", "1.1"):
            raise ValueError(f"TLS {text} is refused: give 1.2 or 1.3")
        return text.removeprefix("TLSv") if isinstance(text, str) else text

    @model_validator(mode="after")
    def _tls_combinations(self) -> BrokerTlsFields:
        for link in LINKS:
            self.link_tls(link)
        return self

    def link_tls(self, link: str) -> LinkTls | None:
        """The link's TLS settings, None when it is plain; ValueError for a contradiction."""
        url: str = getattr(self, f"{link}_url")
        values = {name: getattr(self, f"{link}_{name}") for name in (*FILE_FIELDS, "tls")}
        scheme = urlsplit(url).scheme.lower()
        if values["tls"] is False and scheme == "amqps":
            raise ValueError(f"broker.{link}_tls = false contradicts its amqps:// URL")
        if not (values["tls"] or scheme == "amqps"):
            named = [f for f in (*FILE_FIELDS, "tls_server_name") if getattr(self, f"{link}_{f}")]
            if named:
                raise ValueError(
                    f"broker.{link}_{named[0]} is set but the {link} link is plain AMQP: "
                    f"use an amqps:// URL or set broker.{link}_tls = true"
                )
            return None
        if (values["tls_cert"] is None) != (values["tls_key"] is None):
            raise ValueError(f"broker.{link}_tls_cert and broker.{link}_tls_key go together")
        host = getattr(self, f"{link}_tls_server_name") or urlsplit(url).hostname
        if not host:
            raise ValueError(f"broker.{link}_url names no host to check the certificate against")
        return LinkTls(
            link=link,
            ca_file=values["tls_ca"],
            cert_file=values["tls_cert"],
            key_file=values["tls_key"],
            server_name=host,
            min_version=getattr(self, f"{link}_tls_min_version"),
        )

    def link_target(self, link: str) -> tuple[str, ssl.SSLContext | None]:
        """The URL and the TLS context (None: plain) to connect the link with."""
        url: str = getattr(self, f"{link}_url")
        tls = self.link_tls(link)
        return (url, None) if tls is None else (tls_url(url), tls.context())


def tls_url(url: str) -> str:
    """``url`` as aio-pika must see it to speak TLS: ``amqps://`` (its own port kept; none
    given: 5671)."""
    scheme, colon, rest = url.partition(":")
    return f"amqps:{rest}" if colon and scheme.lower() == "amqp" else url
