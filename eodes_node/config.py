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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class NodeConfig(Section):
    node: NodeSection
    broker: BrokerSection
    keys: KeysSection
    store: StoreSection
    retry: RetrySection = RetrySection()
    limits: LimitsSection = LimitsSection()
    logging: LoggingSection = LoggingSection()


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


def _resolve(base: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    merged = _env_overrides(raw, os.environ if environ is None else environ)
    base = path.resolve().parent
    keys = merged.get("keys", {})
    for field in ("private_key", "partner_jwks"):
        if field in keys:
            keys[field] = _resolve(base, keys[field])
    store = merged.get("store", {})
    url = store.get("url")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        store["url"] = "sqlite:///" + str(_resolve(base, url[len("sqlite:///") :]))
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
