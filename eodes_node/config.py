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
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import ValidationError

from eodes_node.broker_cluster import env_url_forms_win, listed_urls
from eodes_node.broker_tls import LINKS
from eodes_node.config_sections import BrokerSection as BrokerSection
from eodes_node.config_sections import HttpSection as HttpSection
from eodes_node.config_sections import KeysSection as KeysSection
from eodes_node.config_sections import LimitsSection as LimitsSection
from eodes_node.config_sections import LoggingSection as LoggingSection
from eodes_node.config_sections import NodeConfig as NodeConfig
from eodes_node.config_sections import NodeSection as NodeSection
from eodes_node.config_sections import RetrySection as RetrySection
from eodes_node.config_sections import Section as Section
from eodes_node.config_sections import StoreSection as StoreSection
from eodes_node.errors import ConfigError

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
