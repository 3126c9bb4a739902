"""The [broker] settings for a clustered broker: several URLs per link, and the queue type.

A link (``local``: our own broker; ``partner``: the partner's) names one broker with
``<link>_url`` or the members of a cluster with ``<link>_urls``: a TOML list, or in the
environment and in a ``<link>_urls_file`` URLs separated by commas or new lines. The node
connects to the first member that answers, and after losing it, to the next. Either form
takes ``<link>_password`` (or its ``_file``), which goes into every URL.

``queue_type`` is how the node declares its queues: ``classic`` (one broker) or
``quorum`` (replicated across the cluster), with ``delivery_limit`` for quorum queues.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator

from eodes_node.errors import ConfigError
from eodes_node.topology import DEFAULT_DELIVERY_LIMIT, QueueKind

__all__ = ["BrokerClusterFields", "env_url_forms_win", "listed_urls", "split_urls"]

CLUSTER_LINKS = ("local", "partner")
_SEPARATORS = re.compile(r"[,\s]+")


def split_urls(value: Any, where: str) -> tuple[str, ...]:
    """The URLs a setting lists; a ``ValueError`` naming ``where`` for anything else."""
    if isinstance(value, str):
        urls = [url for url in _SEPARATORS.split(value) if url]
    elif isinstance(value, list | tuple) and all(isinstance(url, str) for url in value):
        urls = [url.strip() for url in value]
    else:
        raise ValueError(f"{where}: expected a list of URLs, got {type(value).__name__}")
    if not urls or not all(urls):
        raise ValueError(f"{where}: names no URL" if not urls else f"{where}: an empty URL")
    for index, url in enumerate(urls, start=1):
        if url in urls[: index - 1]:
            # Not shown: it may carry a password.
            raise ValueError(f"{where}: URL {index} repeats an earlier one")
    return tuple(urls)


def listed_urls(urls: Any, where: str) -> tuple[str, ...]:
    """``split_urls`` for the configuration loader, whose errors are ``ConfigError``."""
    try:
        return split_urls(urls, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def env_url_forms_win(
    raw: Mapping[str, Any], env: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """The TOML without a link's URL settings when the environment gives that link's URL in
    either form: EODES_BROKER_LOCAL_URL replaces a TOML's ``local_urls`` as it would its
    ``local_url``."""
    broker, given = dict(raw.get("broker", {})), env.get("broker", {})
    for link in CLUSTER_LINKS:
        forms = [f"{link}_{key}{file}" for key in ("url", "urls") for file in ("", "_file")]
        if any(form in given for form in forms):
            for form in forms:
                broker.pop(form, None)
    return {**raw, "broker": broker} if "broker" in raw else dict(raw)


class BrokerClusterFields(BaseModel):
    """The cluster settings, mixed into the [broker] section."""

    # Every member of each link's cluster, <link>_url the first; empty: <link>_url alone.
    # Passwords: repr off. ``link_urls`` gives a link's URLs either way.
    local_urls: tuple[str, ...] = Field(default=(), repr=False)
    partner_urls: tuple[str, ...] = Field(default=(), repr=False)
    queue_type: Literal["classic", "quorum"] = "classic"
    # Quorum queues only (classic ones ignore it): deliveries of one message before the
    # broker dead-letters it into the queue's .dead queue.
    delivery_limit: Annotated[int, Field(ge=1, le=1_000_000)] = DEFAULT_DELIVERY_LIMIT

    @model_validator(mode="before")
    @classmethod
    def _one_url_form(cls, data: Any) -> Any:
        """``<link>_url`` is the first of ``<link>_urls``: filled in from it, or, both given
        (a configuration written back out holds both), it must agree."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for link in CLUSTER_LINKS:
            one, many = f"{link}_url", f"{link}_urls"
            if data.get(many) in (None, "", [], ()):
                data[many] = ()
                continue
            urls = split_urls(data[many], f"broker.{many}")
            if data.get(one) not in (None, urls[0]):
                raise ValueError(
                    f"broker.{one} is not the first of broker.{many}: give one or the other"
                )
            data[many], data[one] = urls, urls[0]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> BrokerClusterFields:
        for link in CLUSTER_LINKS:
            urls = self.link_urls(link)
            schemes = {urlsplit(url).scheme.lower() for url in urls}
            if len(schemes) > 1:
                raise ValueError(
                    f"broker.{link}_urls mixes {' and '.join(sorted(schemes))} URLs: the "
                    "members of one cluster are reached the same way"
                )
        return self

    def link_urls(self, link: str) -> tuple[str, ...]:
        """The link's broker URLs: its cluster's members, or its one URL."""
        urls: tuple[str, ...] = getattr(self, f"{link}_urls")
        return urls or (getattr(self, f"{link}_url"),)

    @property
    def queue_kind(self) -> QueueKind:
        return QueueKind(self.queue_type, self.delivery_limit)
