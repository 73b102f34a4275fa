"""Connection URLs: where they come from, and how they are shown."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

from movierec_assets.config import ENV_DATABASE_URL

_PASSWORD_IN_TEXT = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)([^@\s]+)(@)")


def external_url() -> str | None:
    """The external server URL from `MOVIEREC_DATABASE_URL`, if set."""
    url = os.environ.get(ENV_DATABASE_URL, "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{ENV_DATABASE_URL} must be a postgresql:// URL, got {redact(url)!r}")
    return url


def redact(url: str) -> str:
    """The URL with its password replaced by '***', for logs, metadata and the UI."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def redact_text(text: str) -> str:
    """Redact every DSN password inside free text (error messages, logs)."""
    return _PASSWORD_IN_TEXT.sub(r"\1***\3", text)


def libpq_params(url: str) -> dict[str, str]:
    """Extra libpq parameters we always want: bounded connect time, an application name."""
    return {"connect_timeout": "10", "application_name": "movierec"}
