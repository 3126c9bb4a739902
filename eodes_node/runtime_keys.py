"""The node's keys while it runs: reload on SIGHUP, follow our key's published window, warn.

Split from ``runtime`` so the lifecycle reads apart from the key upkeep; ``Node`` inherits
``NodeKeys``, so the methods and their behaviour are those the node always had.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import structlog

from eodes_node.config import NodeConfig
from eodes_node.errors import ConfigError
from eodes_node.keyfiles import KeyMaterial, follow_published_window, reload_key_material
from eodes_node.keywatch import KEY_WATCH_S, KeyWatch, next_look
from eodes_node.loops import first_of
from eodes_node.ports import Broker, Clock
from eodes_node.service import NodeService

if TYPE_CHECKING:
    from eodes_node.runtime import Surface

log = structlog.get_logger("eodes_node.runtime")


class NodeKeys:
    """The key side of ``Node``: the attributes below are set by ``Node.__init__``."""

    config: NodeConfig
    service: NodeService
    broker: Broker
    clock: Clock
    surface: Surface | None
    keys: KeyMaterial | None
    key_watch: KeyWatch
    reload_wanted: asyncio.Event

    def reload_keys(self) -> bool:
        """Read our key and the partner's JWK Set again, each on its own; True when both
        were taken. No ``await`` between loading and swapping, and a batch reads the
        identity once: it sees the old keys or the new ones, never a mix. A file that
        cannot be used keeps the keys it held without holding back the other; our key is
        swapped in even outside its window, and then signs nothing."""
        if self.keys is None:
            return False
        paths = self.config.keys
        reload = reload_key_material(
            self.keys, paths.private_key, paths.partner_jwks, self.config.node.partner
        )
        for failure, kept in ((reload.own_failure, "ours"), (reload.partner_failure, "partner's")):
            if failure is not None:
                log.error("keys_reload_failed", error=failure, note=f"the {kept} stay in use")
        if len(reload.failures) == 2:
            return False
        material = reload.material
        self._use_keys(material)
        log.info("keys_reloaded", kid=material.key.kid, partner_kids=sorted(material.partner.keys))
        self.key_watch.check_signing(material.own, int(self.clock.now().timestamp()))
        return not reload.failures

    def _use_keys(self, material: KeyMaterial) -> None:
        self.service.id = dataclasses.replace(
            self.service.id, key=material.key, partner_keys=material.partner
        )
        self.keys = material
        self.service.signing.keys_changed()
        if self.surface is not None:
            self.surface.keys_reloaded(material.published, material.partner)
        self.service.metrics.watch_keys("own", [material.own])
        self.service.metrics.watch_keys(self.config.node.partner, material.partner.keys.values())

    async def _reload_when_asked(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await first_of(stop, self.reload_wanted, KEY_WATCH_S)
            if self.reload_wanted.is_set() and not stop.is_set():
                self.reload_wanted.clear()
                self.reload_keys()
                await self._watch_keys()

    async def _watch_keys(self) -> float:
        """Warn of keys that expire soon; follow our signing key's published window (a
        rotation or revocation whose reload was forgotten still stops signing at its
        ``exp``), and say so once signing stops. Returns the wait until the next look."""
        if self.keys is None:
            return KEY_WATCH_S
        now = int(self.clock.now().timestamp())
        try:
            followed = follow_published_window(self.keys, self.config.keys.private_key)
        except ConfigError as exc:
            log.warning("own_jwks_unreadable", error=str(exc), note="our key's window is kept")
        else:
            if followed is not self.keys:
                own = followed.own
                log.info("signing_window_changed", kid=own.kid, nbf=own.not_before, exp=own.expires)
                self._use_keys(followed)
        partner = self.config.node.partner
        tagged = [("own", self.keys.own), *((partner, k) for k in self.keys.partner.keys.values())]
        self.key_watch.warn_expiring(tagged, now)
        self.key_watch.check_signing(self.keys.own, now)
        await self.key_watch.tell(self.broker, self.service.topology, partner, self.clock.now())
        return next_look(self.keys.own, now)
