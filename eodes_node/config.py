"""Node configuration: a TOML file, overridden by EODES_<SECTION>_<KEY> environment variables.

Relative paths are resolved against the config file's own directory, so a config works the
same from any working directory.

Secrets need never be written in the TOML: each setting that may hold one (the broker and
store URLs, the passwords given apart from them, the HTTP tokens) can instead be read from
a file, named by ``<key>_file`` in the TOML or by EODES_<SECTION>_<KEY>_FILE, as systemd
credentials and container secrets are handed over. A secret file must be readable by its
owner alone.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from eodes_node.broker_cluster import BrokerClusterFields, env_url_forms_win, listed_urls
from eodes_node.broker_tls import LINKS, BrokerTlsFields
from eodes_node.core.models import CountryCode
from eodes_node.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeSection(Section):
    country: CountryCode
    partner: CountryCode
    # Prefix of every exchange and queue; lets several nodes or test runs share a vhost.
    namespace: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")] = "eodes"


class BrokerSection(Section, BrokerTlsFields, BrokerClusterFields):
    """Our local broker and the partner's; the TLS settings of each: ``broker_tls``; URL
    lists for a cluster and the queue type: ``broker_cluster``."""

    # Each may carry a password: never part of the section's repr.
    local_url: str = Field(repr=False)
    partner_url: str = Field(repr=False)
    prefetch: Annotated[int, Field(ge=1, le=10_000)] = 256
    # Deliveries handled together: one store commit and one receipt for the batch.
    batch_max: Annotated[int, Field(ge=1, le=1000)] = 64
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    io_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    reconnect_interval_s: Annotated[float, Field(gt=0)] = 1.0


class KeysSection(Section):
    private_key: Path
    partner_jwks: Path
    # Warn (once a day per key) when our signing key or a pinned partner key expires sooner.
    expiry_warning_days: Annotated[int, Field(ge=1, le=365)] = 30


class StoreSection(Section):
    # sqlite:///relative/or/absolute/path.db, or postgresql+psycopg://...
    url: str = Field(repr=False)
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
    # Legal retention: `eodes-node prune` keeps everything younger than this many days.
    retention_days: Annotated[int, Field(ge=1, le=100 * 366)] = 3653
    # PostgreSQL, several instances of one link: how often a standby tries to take over
    # and the active one checks it still holds the link (a takeover waits about this long).
    standby_poll_s: Annotated[float, Field(gt=0, le=60)] = 2.0


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
    (best set as EODES_HTTP_TOKENS) and/or ``tokens_file`` (EODES_HTTP_TOKENS_FILE; mode
    0600, like ``tls_key``); both count. They are never logged, only their name is.
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

# The settings that may hold a secret, by section. Each is given at most once per layer
# (TOML or environment): as ``<key>`` or as ``<key>_file``, a file holding the value.
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "broker": tuple(f"{link}_{key}" for key in ("url", "urls", "password") for link in LINKS),
    "store": ("url", "password"),
}
# A password given apart from its URL, and the URL it goes into.
PASSWORD_FOR: dict[tuple[str, str], str] = {
    ("broker", "local_password"): "local_url",
    ("broker", "partner_password"): "partner_url",
    ("store", "password"): "url",
}
# Files that hold a secret or a private key and are read where the node runs.
GUARDED_FILES = (
    ("http", "tokens_file"),
    ("http", "tls_key"),
    *(("broker", f"{link}_tls_key") for link in LINKS),
)
MAX_SECRET_BYTES = 64 * 1024


def _env_values(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """EODES_<SECTION>_<KEY> variables by section and lower-case key."""
    sections = set(NodeConfig.model_fields)
    found: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            continue
        found.setdefault(section, {})[key] = value
    return found


def _env_overrides(raw: dict[str, Any], env: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for section, values in env.items():
        merged.setdefault(section, {}).update(values)
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


def _private_file_status(path: Path, where: str, what: str) -> os.stat_result:
    """The file's status; a clear error when it is missing, not a file, or open to others."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where}: {what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {what} {path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"{where}: not a usable path ({exc})") from None
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(f"{where}: {what} {path} is not a regular file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{where}: {what} {path} is open to group or others (mode {mode:03o}); chmod 600 it"
        )
    return status


def read_secret_file(path: Path, where: str) -> str:
    """A secret held in a file, without the one trailing newline editors add.

    Refused when others than its owner may read it: a secret is only as safe as its file.
    """
    status = _private_file_status(path, where, "secret file")
    if status.st_size > MAX_SECRET_BYTES:
        raise ConfigError(f"{where}: secret file {path} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: secret file {path} is not UTF-8 (byte {exc.start})") from None
    for newline in ("\r\n", "\n"):
        if text.endswith(newline):
            text = text[: -len(newline)]
            break
    if not text:
        raise ConfigError(f"{where}: secret file {path} is empty")
    return text


def _secret_in_layer(
    values: Mapping[str, Any], key: str, base: Path, names: tuple[str, str]
) -> str | None:
    """The secret ``key`` as one layer gives it (value or file), or None if it does not.

    ``names`` are how the layer spells the value and the file, for error messages.
    """
    plain, from_file = values.get(key), values.get(f"{key}_file")
    if plain is not None and from_file is not None:
        raise ConfigError(f"give {names[0]} or {names[1]}, not both")
    if from_file is not None:
        if from_file == "":
            raise ConfigError(f"{names[1]} is empty: it must name a file")
        return read_secret_file(_resolve(base, from_file, names[1]), names[1])
    if key.endswith("_urls") and isinstance(plain, list):  # none listed: not given
        return ",".join(listed_urls(plain, names[0])) if plain else None
    if plain is not None and not isinstance(plain, str):
        raise ConfigError(f"{names[0]}: expected a string, got {type(plain).__name__}")
    return plain


def _with_password(url: str, password: str, where: str) -> str:
    """``url`` with ``password`` put in, percent-encoded, beside the user name it names."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"{where}: the URL it goes into is not a URL") from None
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or not userinfo:
        raise ConfigError(f"{where}: the URL it goes into names no user")
    if ":" in userinfo:
        raise ConfigError(f"{where}: the URL it goes into already carries a password")
    try:
        netloc = f"{userinfo}:{quote(password, safe='')}@{host}"
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: the password is not valid text") from None
    return urlunsplit(parts._replace(netloc=netloc))


def _apply_secrets(
    merged: dict[str, Any],
    raw: Mapping[str, Any],
    env: Mapping[str, Mapping[str, str]],
    base: Path,
) -> None:
    """Put each secret in place: the environment's over the file's, a password given apart
    into its URL. Only the secret files that are used are read."""
    for section, keys in SECRET_KEYS.items():
        if section not in merged:
            continue
        values = merged[section]
        for key in keys:
            values.pop(key, None)
            values.pop(f"{key}_file", None)
            upper = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            value = _secret_in_layer(env.get(section, {}), key, base, (upper, f"{upper}_FILE"))
            if value is None:
                dotted = f"{section}.{key}"
                value = _secret_in_layer(
                    raw.get(section, {}), key, base, (dotted, f"{dotted}_file")
                )
            if value is not None:
                values[key] = value
        for (owner, password_key), url_key in PASSWORD_FOR.items():
            if owner != section or password_key not in values:
                continue
            password = values.pop(password_key)
            where = f"{section}.{password_key}"
            url = values.get(url_key)
            if isinstance(url, str):
                values[url_key] = _with_password(url, password, where)
            if isinstance(urls := values.get(f"{url_key}s"), str):  # a cluster: every member
                listed = listed_urls(urls, f"{section}.{url_key}s")
                values[f"{url_key}s"] = [_with_password(u, password, where) for u in listed]


def _check_guarded_files(merged: Mapping[str, Any]) -> None:
    for section, key in GUARDED_FILES:
        path = merged.get(section, {}).get(key)
        if isinstance(path, Path):
            _private_file_status(path, f"{section}.{key}", "file")


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
        (
            "broker",
            tuple(f"{link}_{f}" for link in LINKS for f in ("tls_ca", "tls_cert", "tls_key")),
        ),
    ):
        values = merged.get(section, {})
        for field in fields:
            if values.get(field):
                values[field] = _resolve(base, values[field], f"{section}.{field}")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    raw = _read_toml(path)
    env = _env_values(os.environ if environ is None else environ)
    merged = _env_overrides(raw, env)
    base = path.resolve().parent
    _apply_secrets(merged, env_url_forms_win(raw, env), env, base)
    _resolve_paths(merged, base)
    _check_guarded_files(merged)
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
    for link in LINKS:  # reads the TLS files: an unusable one stops the start here
        tls = config.broker.link_tls(link)
        if tls is not None:
            tls.context()
    return config
