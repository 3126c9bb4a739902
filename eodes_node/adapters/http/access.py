"""Who may call what: bearer tokens with a role, ``viewer`` or ``operator``.

Tokens come from the configuration (``http.tokens``, best given as EODES_HTTP_TOKENS)
and ``http.tokens_file``, one ``role:token[:name]`` per line or comma. They are compared
in constant time and never logged: log lines and audit entries carry the token's name.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from aiohttp import web

from eodes_node.adapters.http.problems import ProblemError
from eodes_node.errors import ConfigError

MIN_TOKEN_LENGTH = 16


class Role(IntEnum):
    """Ordered: an operator may do everything a viewer may."""

    VIEWER = 1
    OPERATOR = 2


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # for logs and audit; never the token
    role: Role


def parse_tokens(text: str, *, where: str) -> list[tuple[str, Principal]]:
    """``role:token[:name]`` entries separated by commas or new lines; # starts a comment."""
    found = []
    for n, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        role_name, _, rest = entry.partition(":")
        token, _, name = rest.partition(":")
        try:
            role = Role[role_name.strip().upper()]
        except KeyError:
            # Not echoed: an entry without its role starts with the token itself.
            raise ConfigError(
                f"{where} entry {n}: must start with its role, viewer: or operator: "
                "(the entry is not shown, it may hold a token)"
            ) from None
        token = token.strip()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{where} entry {n}: a token must have at least {MIN_TOKEN_LENGTH} characters"
            )
        found.append((token, Principal(name.strip() or f"{role.name.lower()}-{n}", role)))
    return found


class Access:
    """The configured tokens; ``require`` is the one check every protected handler makes."""

    def __init__(self, tokens: list[tuple[str, Principal]]) -> None:
        self._tokens = [(t.encode(), p) for t, p in tokens]

    @classmethod
    def from_config(cls, tokens: str, tokens_file: Path | None) -> Access:
        entries = parse_tokens(tokens, where="http.tokens")
        if tokens_file is not None:
            try:
                text = tokens_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read http.tokens_file {tokens_file}: {exc}") from None
            entries += parse_tokens(text, where=str(tokens_file))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def token_with(self, role: Role) -> str | None:
        """A configured token granting ``role``: what the command line calls the node with."""
        for token, principal in self._tokens:
            if principal.role >= role:
                return token.decode()
        return None

    def principal(self, token: str) -> Principal | None:
        """The token's holder; every configured token is compared, in constant time."""
        given = token.encode()
        found = None
        for known, principal in self._tokens:
            if hmac.compare_digest(known, given):
                found = principal
        return found

    def require(self, request: web.Request, role: Role) -> Principal:
        """The caller, if its bearer token grants ``role``; else a 401 or 403 problem."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ProblemError(
                401,
                "Unauthenticated",
                "this resource needs an Authorization: Bearer <token> header",
                headers={"WWW-Authenticate": 'Bearer realm="eodes-node"'},
            )
        principal = self.principal(token.strip())
        if principal is None:
            raise ProblemError(
                401,
                "Unauthenticated",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="eodes-node", error="invalid_token"'},
            )
        if principal.role < role:
            raise ProblemError(
                403,
                "Forbidden",
                f"this needs the {role.name.lower()} role; "
                f"{principal.name} is a {principal.role.name.lower()}",
            )
        return principal
