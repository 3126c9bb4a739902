"""Key files: private keys written so that no other user can ever read them, our published
JWK Set beside the private key, and the rotation and revocation of our keys.

Kept apart from the CLI so that the node (start-up and SIGHUP reload), the test harness,
the demo and the benchmark read and write keys the same way.

Layout: the configuration's ``[keys] private_key`` (``DIR/NAME.key.pem``) is always the
key we sign with; our public JWK Set is ``DIR/NAME.jwks.json`` beside it, and carries
each key's validity window (``nbf``/``exp``). A rotation archives the replaced private
key as ``DIR/NAME.<kid>.key.pem`` (0600) and writes the new one in its place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import orjson

from eodes_node.core.jws import Algorithm, KeySet, PrivateKey, PublicKey
from eodes_node.core.validity import window_problem
from eodes_node.errors import ConfigError

__all__ = [
    "KeyMaterial",
    "Reload",
    "Rotation",
    "archive_path",
    "follow_published_window",
    "load_key_material",
    "load_own_keys",
    "load_partner_keys",
    "own_jwks_path",
    "read_own_jwks",
    "reload_key_material",
    "revoke_key",
    "rotate_keys",
    "windowed",
    "write_jwks",
    "write_private_key",
]

_KEY_SUFFIX = ".key.pem"


def write_private_key(path: Path, pem: bytes) -> None:
    """Create the key file 0600 from the start: never a moment where others could read it.

    ``O_EXCL`` refuses an existing file or symlink, so a key never lands in a file someone
    else prepared with wider permissions.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _stem(private_key: Path) -> str:
    name = private_key.name
    return name[: -len(_KEY_SUFFIX)] if name.endswith(_KEY_SUFFIX) else name


def own_jwks_path(private_key: Path) -> Path:
    """Our public JWK Set: ``NAME.jwks.json`` beside ``NAME.key.pem`` (as keygen writes)."""
    return private_key.with_name(f"{_stem(private_key)}.jwks.json")


def archive_path(private_key: Path, kid: str) -> Path:
    """Where a rotation keeps a replaced private key (a kid is base64url: file-name safe)."""
    return private_key.with_name(f"{_stem(private_key)}.{kid}{_KEY_SUFFIX}")


def write_jwks(path: Path, keys: KeySet) -> None:
    """Replace the JWK Set in one rename, so a node reloading on SIGHUP never reads half."""
    text = orjson.dumps(keys.to_jwks(), option=orjson.OPT_INDENT_2) + b"\n"
    scratch = path.with_name(f".{path.name}.new")
    scratch.unlink(missing_ok=True)
    scratch.write_bytes(text)
    os.replace(scratch, path)


def read_private_key(path: Path) -> PrivateKey:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"private key {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        return PrivateKey.from_pem(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read key material: {exc}") from None


def read_jwks(path: Path, owner: str | None = None) -> KeySet:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key material: {exc}") from None
    try:
        return KeySet.from_jwks(data, owner=owner)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_own_jwks(private_key: Path, key: PrivateKey) -> KeySet:
    """Our published JWK Set; without the file, just the signing key with no window."""
    path = own_jwks_path(private_key)
    if not path.exists():
        return KeySet({key.kid: key.public})
    published = read_jwks(path)
    if key.kid not in published.keys:
        raise ConfigError(
            f"our JWK Set {path} does not hold our signing key {key.kid} ({private_key}): "
            "the partner could not verify what we sign"
        )
    return published


def windowed(key: PrivateKey, published: PublicKey) -> PrivateKey:
    """Our private key whose ``public`` is the key as we publish it, window included: the
    core reads that window each time it is about to sign (``core.plan.common``)."""
    if published.kid != key.kid:
        raise ValueError(f"{published.kid} is not the public half of {key.kid}")
    signing = PrivateKey(key.alg, key.key)
    object.__setattr__(signing, "public", published)  # as PrivateKey.__post_init__ sets it
    return signing


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """What a node signs and verifies with."""

    key: PrivateKey  # its ``public`` is ``own``
    own: PublicKey  # our signing key as published, with its validity window
    published: KeySet  # our whole JWK Set (what the partner pins)
    partner: KeySet


def load_own_keys(private_key: Path) -> tuple[PrivateKey, KeySet]:
    """Our signing key (carrying its published window) and our whole JWK Set."""
    key = read_private_key(private_key)
    published = read_own_jwks(private_key, key)
    return windowed(key, published.keys[key.kid]), published


def load_partner_keys(partner_jwks: Path, partner: str, own_kid: str) -> KeySet:
    """The partner's pinned JWK Set; refused when it holds our own signing key."""
    partner_keys = read_jwks(partner_jwks, owner=partner)
    if own_kid in partner_keys.keys:
        # Both nodes would then take a message signed with our key as the partner's:
        # each side accepts its own forgeries.
        raise ConfigError(
            f"the partner's JWK Set {partner_jwks} holds our own public key "
            f"{own_kid} ([keys] private_key): pin the keys {partner}'s operators "
            "sent, never ours"
        )
    return partner_keys


def load_key_material(
    private_key: Path, partner_jwks: Path, partner: str, *, now: int
) -> KeyMaterial:
    """Read and check our key, our JWK Set and the partner's, at start-up: a node does
    not start with a key it may not sign with."""
    key, published = load_own_keys(private_key)
    problem = window_problem(key.public, now)
    if problem is not None:
        raise ConfigError(
            f"our signing key may not sign now: {problem} (see {own_jwks_path(private_key)}); "
            "run `eodes-node keys rotate`"
        )
    partner_keys = load_partner_keys(partner_jwks, partner, key.kid)
    return KeyMaterial(key, key.public, published, partner_keys)


@dataclass(frozen=True, slots=True)
class Reload:
    """What a reload read: the keys to use from now on, and why a part was kept."""

    material: KeyMaterial
    own_failure: str | None = None  # our key or JWK Set could not be used: kept
    partner_failure: str | None = None  # the partner's JWK Set could not be used: kept

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(f for f in (self.own_failure, self.partner_failure) if f is not None)


def reload_key_material(
    current: KeyMaterial, private_key: Path, partner_jwks: Path, partner: str
) -> Reload:
    """Read our key and the partner's JWK Set again, each on its own.

    A file that cannot be used keeps the keys it held and never holds back the other: a
    partner's revocation applies even while our own key files are broken. Our key is
    taken even outside its window (the core then signs nothing with it): keeping the old
    one would keep signing with a key we have revoked.
    """
    own_failure = partner_failure = None
    try:
        key, published = load_own_keys(private_key)
    except ConfigError as exc:
        own_failure = str(exc)
        key, published = current.key, current.published
    try:
        partner_keys = load_partner_keys(partner_jwks, partner, key.kid)
    except ConfigError as exc:
        partner_failure = str(exc)
        partner_keys = current.partner
    material = KeyMaterial(key, key.public, published, partner_keys)
    return Reload(material, own_failure, partner_failure)


def follow_published_window(current: KeyMaterial, private_key: Path) -> KeyMaterial:
    """Our keys with our signing key's window as our JWK Set publishes it now (a rotation
    or revocation since the last reload changed its ``exp``); ``current`` when unchanged."""
    key = current.key
    published = read_own_jwks(private_key, key).keys[key.kid]
    if (published.not_before, published.expires) == (key.public.not_before, key.public.expires):
        return current
    return dataclasses.replace(current, key=windowed(key, published), own=published)


@dataclass(frozen=True, slots=True)
class Rotation:
    old_kid: str
    new_kid: str
    old_expires: int
    jwks: Path
    archived: Path


def rotate_keys(
    private_key: Path,
    *,
    now: int,
    overlap_s: int,
    alg: Algorithm | None = None,
    expires: int | None = None,
) -> Rotation:
    """Make a new key pair and publish it beside the old one, which expires after the
    overlap; the new key takes the old one's place at ``private_key``.

    Written in an order a crash cannot hurt: archive, then the JWK Set, then the rename
    that switches the signing key. Until that rename the old key still signs, and it is
    in the published set.
    """
    old = read_private_key(private_key)
    published = read_own_jwks(private_key, old)
    new = PrivateKey.generate(alg or old.alg)
    old_public = published.keys[old.kid]
    ends = now + overlap_s
    if old_public.expires is not None:
        ends = min(ends, old_public.expires)
    if expires is not None and expires <= now:
        raise ConfigError("the new key's expiry must lie in the future")
    keys = dict(published.keys)
    keys[old.kid] = dataclasses.replace(old_public, expires=ends)
    keys[new.kid] = dataclasses.replace(new.public, expires=expires)
    archived = archive_path(private_key, old.kid)
    if not archived.exists():
        write_private_key(archived, old.to_pem())
    scratch = private_key.with_name(f".{private_key.name}.new")
    scratch.unlink(missing_ok=True)
    write_private_key(scratch, new.to_pem())
    jwks = own_jwks_path(private_key)
    try:
        write_jwks(jwks, KeySet(keys))
        os.replace(scratch, private_key)
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
    return Rotation(old.kid, new.kid, ends, jwks, archived)


def revoke_key(private_key: Path, kid: str, *, now: int, force: bool = False) -> PublicKey:
    """Set ``exp`` of our key ``kid`` to ``now`` in our JWK Set; refuse our signing key
    (the node could sign nothing after its next reload) unless forced."""
    signing = read_private_key(private_key)
    published = read_own_jwks(private_key, signing)
    target = published.keys.get(kid)
    if target is None:
        known = ", ".join(published.keys)
        raise ConfigError(f"no key {kid} in {own_jwks_path(private_key)} (it holds {known})")
    if kid == signing.kid and not force:
        raise ConfigError(
            f"{kid} is our signing key ({private_key}), the only one we can sign with: "
            "rotate first, or pass --force to revoke it anyway"
        )
    ends = now if target.expires is None else min(target.expires, now)
    # A key revoked before its nbf: drop the nbf, which exp may not precede.
    starts = target.not_before if target.not_before is None or target.not_before < ends else None
    revoked = dataclasses.replace(target, not_before=starts, expires=ends)
    write_jwks(own_jwks_path(private_key), KeySet({**published.keys, kid: revoked}))
    return revoked
