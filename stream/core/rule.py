"""The eligibility rule of SPEC.md: every failed condition is a reason."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from stream.core.policy import Policy
from stream.core.state import AccountState
from stream.core.times import coming_of_age_us, parse_time


class Reason(StrEnum):
    PRIVATE_CONVERSATION = "private_conversation"
    NOT_PUBLIC = "not_public"
    POST_DELETED = "post_deleted"
    ACCOUNT_DELETED = "account_deleted"
    OBJECTED = "objected"
    QUARANTINED = "quarantined"
    AGE_UNKNOWN = "age_unknown"
    MINOR = "minor"
    REGION_UNKNOWN = "region_unknown"
    OUT_OF_REGION = "out_of_region"
    BEFORE_CUTOFF = "before_cutoff"


Reasons = tuple[Reason, ...]
ELIGIBLE: Final[Reasons] = ()


class Rule:
    """A policy compiled for evaluation."""

    __slots__ = ("_not_before", "_policy", "_regions", "version")

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._regions = frozenset(policy.regions)
        self._not_before = None if policy.not_before is None else parse_time(policy.not_before)
        self.version = policy.version

    @property
    def policy(self) -> Policy:
        return self._policy

    def content_reasons(self, kind: str, audience: str) -> Reasons:
        if kind == "message":
            if audience != "public":
                return (Reason.PRIVATE_CONVERSATION, Reason.NOT_PUBLIC)
            return (Reason.PRIVATE_CONVERSATION,)
        if audience != "public":
            return (Reason.NOT_PUBLIC,)
        return ELIGIBLE

    def account_reasons(self, account: AccountState | None, created_at: int) -> Reasons:
        """Reasons that come from the author and the post's earliest `created_at`."""
        if account is None:
            reasons = [Reason.AGE_UNKNOWN, Reason.REGION_UNKNOWN]
        else:
            reasons = []
            if account.deleted:
                reasons.append(Reason.ACCOUNT_DELETED)
            if account.objected:
                reasons.append(Reason.OBJECTED)
            if account.quarantined_by:
                reasons.append(Reason.QUARANTINED)
            if account.birth_date is None:
                reasons.append(Reason.AGE_UNKNOWN)
            else:
                age = self._policy.min_age_for(account.country)
                if created_at < coming_of_age_us(account.birth_date, age):
                    reasons.append(Reason.MINOR)
            if account.country is None:
                reasons.append(Reason.REGION_UNKNOWN)
            elif account.country not in self._regions:
                reasons.append(Reason.OUT_OF_REGION)
        if self._not_before is not None and created_at < self._not_before:
            reasons.append(Reason.BEFORE_CUTOFF)
        return tuple(reasons)

    def reasons(
        self,
        kind: str,
        audience: str,
        post_deleted: bool,
        account: AccountState | None,
        created_at: int,
    ) -> Reasons:
        """All reasons a post version is not eligible; empty when it is."""
        reasons = self.content_reasons(kind, audience)
        if post_deleted:
            reasons += (Reason.POST_DELETED,)
        return reasons + self.account_reasons(account, created_at)
