"""Counts of what a run decided, read off its audit records."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from stream.core.records import AuditRecord


@dataclass(slots=True)
class Summary:
    events: int = 0
    published: int = 0
    excluded: Counter[str] = field(default_factory=Counter)  # by reason
    excluded_posts: int = 0
    ignored: int = 0
    stale: int = 0
    retracted: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)  # by reason
    seconds: float = 0.0

    def count(self, audit: AuditRecord) -> None:
        outcome = audit.outcome
        if outcome == "published":
            self.published += 1
        elif outcome == "excluded":
            self.excluded_posts += 1
            self.excluded.update(audit.reasons)
        elif outcome == "retracted":
            self.retracted += 1
        elif outcome == "dead_letter":
            self.dead_letters.update(audit.reasons)
        elif outcome == "ignored":
            self.ignored += 1
        elif outcome == "stale":
            self.stale += 1

    def render(self) -> str:
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"events read      {self.events:>10,}",
            f"published        {self.published:>10,}",
            f"excluded         {self.excluded_posts:>10,}  (post versions; by reason below)",
        ]
        lines += [f"  {reason:<22}{n:>8,}" for reason, n in sorted(self.excluded.items())]
        lines += [
            f"retracted        {self.retracted:>10,}",
            f"ignored          {self.ignored:>10,}  (after a final deletion)",
            f"stale            {self.stale:>10,}  (older or equal versions)",
            f"dead letters     {sum(self.dead_letters.values()):>10,}",
        ]
        lines += [f"  {reason:<22}{n:>8,}" for reason, n in sorted(self.dead_letters.items())]
        lines.append(f"events/s         {rate:>10,.0f}  ({self.seconds:.2f} s)")
        return "\n".join(lines)
