"""Keyed pseudonyms of account ids (HMAC-SHA256): stable for one key, never the raw id."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Final

from stream.core.ids import id_bytes

# Only for offline trials: every pseudonym it makes carries DEV_PREFIX, so its
# output can never pass for real output.
DEV_KEY: Final = b"eligibility-filter development key - not for real data"
DEV_PREFIX: Final = "dev-"
MIN_KEY_BYTES: Final = 16


class Pseudonymizer:
    def __init__(self, key: bytes, *, dev: bool = False) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonym key too short: {len(key)} bytes < {MIN_KEY_BYTES}")
        self._key = key
        self.dev = dev
        self._prefix = DEV_PREFIX if dev else ""
        self.author = lru_cache(maxsize=65_536)(self._author)

    def _author(self, account_id: str) -> str:
        digest = hmac.new(self._key, id_bytes(account_id), hashlib.sha256).hexdigest()
        return self._prefix + digest[:32]

    @classmethod
    def development(cls) -> Pseudonymizer:
        return cls(DEV_KEY, dev=True)
