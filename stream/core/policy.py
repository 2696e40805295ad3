"""The eligibility policy: minimum ages, regions, content cutoff, input limits.

Its version is the hash of its canonical form, stamped on every record, so a
training set can be traced to the exact rule that admitted each record.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Final

import msgspec

from stream.core.events import Country, Time
from stream.core.times import parse_time

EU27: Final = (
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
    "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
)
EEA_EFTA: Final = ("IS", "LI", "NO")

Age = Annotated[int, msgspec.Meta(ge=0, le=150)]


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a policy file (JSON) may set; every field has a default."""

    min_age: Age = 18
    min_age_by_country: dict[Country, Age] = {}
    regions: tuple[Country, ...] = EU27 + EEA_EFTA
    not_before: Time | None = None
    clock_skew_seconds: Annotated[int, msgspec.Meta(ge=0)] = 300
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576

    def canonical(self) -> bytes:
        """What decides eligibility (ages, regions, cutoff), in one spelling:
        policies that decide alike have equal bytes. The input limits (clock
        skew, message size) are not part of the rule, so not of its version."""
        data = {
            "min_age": self.min_age,
            "min_age_by_country": {
                country: age
                for country, age in self.min_age_by_country.items()
                if age != self.min_age
            },
            "regions": sorted(set(self.regions)),
            "not_before": None if self.not_before is None else parse_time(self.not_before),
        }
        return msgspec.json.encode(data, order="sorted")

    @property
    def version(self) -> str:
        return "p1-" + hashlib.sha256(self.canonical()).hexdigest()[:16]

    def min_age_for(self, country: str | None) -> int:
        if country is None:
            return self.min_age
        return self.min_age_by_country.get(country, self.min_age)


DEFAULT_POLICY: Final = Policy()


class PolicyError(ValueError):
    """A policy file that cannot be used."""


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return DEFAULT_POLICY
    try:
        policy = msgspec.json.decode(path.read_bytes(), type=Policy)
        if policy.not_before is not None:
            parse_time(policy.not_before)
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise PolicyError(f"invalid policy {path}: {exc}") from None
    return policy
