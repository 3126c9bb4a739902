"""Node configuration: a TOML file, overridden by EODES_<SECTION>_<KEY> environment variables.

Relative paths in the file are resolved against the file's own directory, so a config
works the same from any working directory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from eodes_node.core.models import CountryCode
from eodes_node.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeSection(Section):
    country: CountryCode
    partner: CountryCode
    # Prefix of every exchange and queue; lets several nodes or test runs share a vhost.
    namespace: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")] = "eodes"


class BrokerSection(Section):
    local_url: str
    partner_url: str
    prefetch: Annotated[int, Field(ge=1, le=10_000)] = 256
    # Deliveries handled together: one store commit and one receipt for the batch.
    batch_max: Annotated[int, Field(ge=1, le=1000)] = 64
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    io_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    reconnect_interval_s: Annotated[float, Field(gt=0)] = 1.0


class KeysSection(Section):
    private_key: Path
    partner_jwks: Path


class StoreSection(Section):
    # sqlite:///relative/or/absolute/path.db, or postgresql+psycopg://...
    url: str
    # Bounds on a store call, kept by the database driver: a running transaction is
    # never abandoned, so a stuck one ends here as "store unavailable" and its batch is
    # retried. SQLite: how long a write waits for another connection's lock.
    busy_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    # PostgreSQL: the server cancels a statement that runs longer (the audit chain check
    # reads the whole history in one statement).
    statement_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # PostgreSQL: how long connecting may take, in whole seconds (libpq's minimum is 2).
    connect_timeout_s: Annotated[int, Field(ge=2, le=600)] = 10
    # SQLite: a write-ahead log grown past this is checkpointed and truncated.
    wal_truncate_mb: Annotated[float, Field(gt=0)] = 16.0


class RetrySection(Section):
    first_after_s: Annotated[float, Field(gt=0)] = 5.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    max_interval_s: Annotated[float, Field(gt=0)] = 300.0
    # Sends in all, the first included, before a message is marked failed.
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 10


class LimitsSection(Section):
    # A partner's envelope, refused before any decoding when larger.
    max_message_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024
    # A record from our own issuing or clearance system, refused before parsing.
    max_record_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024
    max_future_skew_s: Annotated[float, Field(ge=0)] = 300.0
    max_age_s: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    drain_timeout_s: Annotated[float, Field(gt=0)] = 15.0


class LoggingSection(Section):
    level: str = "info"
    format: Annotated[str, Field(pattern="^(json|console)$")] = "json"


class HttpSection(Section):
    """The operator surface: health, metrics, the JSON API (and the console beside it).

    Off unless enabled: it opens a port. Tokens (``role:token`` or ``role:token:name``,
    comma- or newline-separated; roles ``viewer`` and ``operator``) come from ``tokens``
    (best set as EODES_HTTP_TOKENS) and/or ``tokens_file``; they are never logged, only
    their name is.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8480  # 0: any free port (tests)
    tokens: SecretStr = SecretStr("")
    tokens_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Serving plain HTTP beyond loopback exposes the tokens: refused unless overridden.
    allow_insecure_bind: bool = False
    # Public verification look-ups per client and minute before 429.
    lookups_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 30

    @model_validator(mode="after")
    def _safe_bind(self) -> HttpSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("http.tls_cert and http.tls_key go together")
        loopback = self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")
        if not loopback and self.tls_cert is None and not self.allow_insecure_bind:
            raise ValueError(
                f"http.host {self.host} is not loopback: configure http.tls_cert and "
                "http.tls_key, or set http.allow_insecure_bind = true"
            )
        return self


class NodeConfig(Section):
    node: NodeSection
    broker: BrokerSection
    keys: KeysSection
    store: StoreSection
    retry: RetrySection = RetrySection()
    limits: LimitsSection = LimitsSection()
    logging: LoggingSection = LoggingSection()
    http: HttpSection = HttpSection()


ENV_PREFIX = "EODES_"


def _env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    sections = {name for name in NodeConfig.model_fields}
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            continue
        merged.setdefault(section, {})[key] = value
    return merged


def _resolve(base: Path, value: Any, where: str) -> Path:
    """A path from the file, relative to the file's own directory."""
    if not isinstance(value, str | Path):
        raise ConfigError(f"{where}: expected a path, got {type(value).__name__}")
    try:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(f"{where}: not a usable path ({exc})") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to be a node configuration") from None
    for name in NodeConfig.model_fields:
        if name in raw and not isinstance(raw[name], dict):
            raise ConfigError(
                f"{path}: [{name}] must be a table of settings, got {type(raw[name]).__name__}"
            )
    return raw


def _resolve_paths(merged: dict[str, Any], base: Path) -> None:
    for section, fields in (
        ("keys", ("private_key", "partner_jwks")),
        ("http", ("tokens_file", "tls_cert", "tls_key")),
    ):
        values = merged.get(section, {})
        for field in fields:
            if values.get(field):
                values[field] = _resolve(base, values[field], f"{section}.{field}")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    raw = _read_toml(path)
    merged = _env_overrides(raw, os.environ if environ is None else environ)
    base = path.resolve().parent
    _resolve_paths(merged, base)
    store = merged.get("store", {})
    url = store.get("url")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        store["url"] = "sqlite:///" + str(_resolve(base, url[len("sqlite:///") :], "store.url"))
    try:
        config = NodeConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    if config.node.country == config.node.partner:
        raise ConfigError(f"{path}: node.country and node.partner must differ")
    return config
