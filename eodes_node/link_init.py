"""`eodes-node init`: everything a new partner link needs, in one directory.

Our key pair, a commented configuration for each end (ours, and the partner's for a
trial on one machine or to hand to its operators), and the broker set-up commands. With
``trial`` the partner's key pair is made too, so both nodes run here at once.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import orjson
import pycountry

from eodes_node.core.codes import country_codes
from eodes_node.core.jws import Algorithm, KeySet, PrivateKey
from eodes_node.errors import ConfigError
from eodes_node.keyfiles import write_private_key
from eodes_node.samples import link_agreement


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """What ``init`` is asked for; ``broker`` and ``partner_broker`` end before the vhost."""

    own: str
    partner: str
    out: Path
    broker: str = "amqp://guest:guest@127.0.0.1:5672"
    partner_broker: str | None = None
    vhost_prefix: str = "eodes-"
    namespace: str = "eodes"
    alg: Algorithm = "Ed25519"
    trial: bool = False

    def vhost(self, country: str) -> str:
        return f"{self.vhost_prefix}{country.lower()}"

    def config_name(self, a: str, b: str) -> str:
        return f"{a.lower()}-{b.lower()}.toml"


def _checked(plan: LinkPlan) -> str:
    """The link's agreement, or a ConfigError naming what is wrong with the request."""
    for option, code in (("--own", plan.own), ("--partner", plan.partner)):
        if code not in country_codes():
            raise ConfigError(f"{option} {code!r} is not an ISO 3166-1 alpha-2 country code")
    if plan.own == plan.partner:
        raise ConfigError("--own and --partner must be different countries")
    try:
        return link_agreement(plan.own, plan.partner)
    except ValueError as exc:
        raise ConfigError(
            f"{exc}; add the agreement to eodes_node/core/agreements.py first"
        ) from None


def _name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return str(getattr(country, "common_name", None) or country.name) if country else code


def _config(plan: LinkPlan, own: str, partner: str, agreement: str) -> str:
    ours = own == plan.own
    base = plan.broker if ours else (plan.partner_broker or plan.broker)
    other = (plan.partner_broker or plan.broker) if ours else plan.broker
    role = (
        f"The {_name(partner)} node runs from {plan.config_name(partner, own)} beside it."
        if ours
        else f"For a trial of the link on one machine, or to hand to {_name(own)}'s operators\n"
        "# as a starting point (they make their own key with `eodes-node keygen`)."
    )
    template = resources.files("eodes_node").joinpath("templates/node.toml").read_text("utf-8")
    return Template(template).substitute(
        own=own,
        partner=partner,
        own_lower=own.lower(),
        partner_lower=partner.lower(),
        own_name=_name(own),
        role=role,
        agreement=agreement,
        namespace=plan.namespace,
        own_vhost=plan.vhost(own),
        local_url=f"{base}/{plan.vhost(own)}",
        partner_url=f"{other}/{plan.vhost(partner)}",
    )


def _broker_script(plan: LinkPlan) -> str:
    q = shlex.quote
    own_v, partner_v = plan.vhost(plan.own), plan.vhost(plan.partner)
    exchange = plan.namespace.replace(".", r"\.") + r"\.inbound"
    user = f"{plan.partner.lower()}-node"
    return f"""#!/bin/sh
# Broker set-up for the {plan.own}-{plan.partner} link, written by `eodes-node init`.
# Run where rabbitmqctl reaches the broker (as root, or as the rabbitmq user); each
# command is idempotent.
set -eu

# {plan.own}'s node: its own vhost, where it declares its queues and consumes.
rabbitmqctl add_vhost {q(own_v)}
rabbitmqctl set_permissions -p {q(own_v)} guest '.*' '.*' '.*'

# {plan.partner}'s node (on its own broker in production; here for a trial on one machine).
rabbitmqctl add_vhost {q(partner_v)}
rabbitmqctl set_permissions -p {q(partner_v)} guest '.*' '.*' '.*'

# In production, {plan.partner}'s node publishes into {plan.own}'s inbound exchange with a
# user of its own that may write there and nowhere else (no configure, no read):
#   rabbitmqctl add_user {user} 'a long random password'
#   rabbitmqctl set_permissions -p {q(own_v)} {user} '^$' '^{exchange}$' '^$'
"""


def _write_keys(directory: Path, name: str, alg: Algorithm, force: bool) -> Path:
    key_path = directory / f"{name}.key.pem"
    if key_path.exists() and not force:
        raise ConfigError(f"{key_path} exists; pass --force to replace it")
    key_path.unlink(missing_ok=True)
    key = PrivateKey.generate(alg)
    write_private_key(key_path, key.to_pem())
    jwks = KeySet({key.kid: key.public}).to_jwks()
    jwks_path = directory / f"{name}.jwks.json"
    jwks_path.write_bytes(orjson.dumps(jwks, option=orjson.OPT_INDENT_2) + b"\n")
    return jwks_path


def create_link(plan: LinkPlan, *, force: bool = False) -> list[Path]:
    """Write the link's files under ``plan.out``; the paths written, ours first."""
    agreement = _checked(plan)
    own, partner = plan.own, plan.partner
    configs = [plan.out / plan.config_name(own, partner), plan.out / plan.config_name(partner, own)]
    for path in configs:
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to replace it")
    keys = plan.out / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    written = [keys / f"{own.lower()}.key.pem", _write_keys(keys, own.lower(), plan.alg, force)]
    if plan.trial:
        written += [
            keys / f"{partner.lower()}.key.pem",
            _write_keys(keys, partner.lower(), plan.alg, force),
        ]
    configs[0].write_text(_config(plan, own, partner, agreement), encoding="utf-8")
    configs[1].write_text(_config(plan, partner, own, agreement), encoding="utf-8")
    script = plan.out / "broker-setup.sh"
    script.write_text(_broker_script(plan), encoding="utf-8")
    script.chmod(0o755)
    return [*written, *configs, script]


def next_steps(plan: LinkPlan) -> str:
    """What to do after ``init``, in the order it is done."""
    out, own, partner = plan.out, plan.own, plan.partner
    ours = out / plan.config_name(own, partner)
    jwks = out / "keys" / f"{partner.lower()}.jwks.json"
    steps = [
        f"1. sh {out / 'broker-setup.sh'}   (the vhosts; see its comments for production users)",
        (
            f"2. {jwks} is the trial key of {partner}; for production, replace it with the JWK "
            f"Set {partner}'s operators send you"
            if plan.trial
            else f"2. put the JWK Set {partner}'s operators send you at {jwks}"
        ),
        f"3. give {out / 'keys' / f'{own.lower()}.jwks.json'} to {partner}'s operators",
        f"4. eodes-node run --config {ours}",
        f"5. before going live, with this node stopped: eodes-node conformance --config "
        f"{ours} plays {own}'s side against {partner}'s node (README, conformance kit)",
    ]
    return "\n".join(steps)
