"""Secret-safe helpers: recognising bcrypt hashes and naming a secret without showing it.

A fingerprint is what the UI, JSON, audit log and exceptions show instead of a value: it
is derived with SHA-256 (so it reveals no prefix), short enough to compare by eye, and
stable across runs so the copy on disk can be matched with the one a server logged.
"""

from __future__ import annotations

import hashlib
import re

#: a well-formed bcrypt hash (ComfyUI-Login's token), anchored
BCRYPT_RE = re.compile(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$")
#: a bcrypt hash anywhere in a line
BCRYPT_ANYWHERE = re.compile(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}")


def fingerprint(value: str) -> str:
    """A short, non-reversible identifier of a secret, e.g. `fp:3f9c0a1b7e`."""
    digest = hashlib.sha256(b"genai-tui fingerprint v1\0" + value.encode("utf-8")).hexdigest()
    return "fp:" + digest[:10]

