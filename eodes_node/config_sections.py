"""The sections of a node's configuration: the pydantic models that validate each table.

Kept apart from ``config``, which reads the TOML file and the environment, fills in the
secrets and resolves the paths: here is only what each setting is and what it may be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from eodes_node.broker_cluster import BrokerClusterFields
from eodes_node.broker_tls import BrokerTlsFields
from eodes_node.core.models import CountryCode


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
    # SQLite: run the transaction of a batch of a few messages on the event loop when the
    # store thread is idle, with the busy handler off (another connection's lock sends it
    # to the thread): two thread wake-ups less per batch. Off keeps the loop free during
    # every fsync, for a disk whose fsync takes tens of milliseconds.
    sqlite_commit_on_loop: bool = True


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
