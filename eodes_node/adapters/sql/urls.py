"""Store urls in messages, without their password.

The password may have come apart from the url (``EODES_STORE_PASSWORD_FILE``) and is put
into it at load: every message that names the url shows it masked.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# user:password@ after a scheme; the fallback for what SQLAlchemy cannot parse.
_USERINFO = re.compile(r"(?P<scheme>://[^:/?#@\s]*):[^@\s]*@")


def masked_url(url: str) -> str:
    """``url`` with its password shown as ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        pass
    if "@" not in url:
        return url
    # Unparsed: whatever comes before the host may hold a password.
    scheme = url.split("://", 1)[0] + "://" if "://" in url else ""
    return f"{scheme}***@{url.rsplit('@', 1)[1]}"


def scrub(text: str) -> str:
    """``text`` with the password of every url in it shown as ``***``."""
    return _USERINFO.sub(r"\g<scheme>:***@", text)
