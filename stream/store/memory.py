"""The embedded state table: plain dicts, for offline replays and tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from stream.core.engine import Footprint
from stream.core.state import AccountState, PostState, StateAccess


class MemoryStore:
    """Both the store and the batch: loading is free, commits are immediate."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountState] = {}
        self.posts: dict[str, PostState] = {}
        self.views: dict[str, dict[str, int]] = {}
        self.meta: dict[str, str] = {}

    # StateStore
    def load(self, footprints: Iterable[Footprint]) -> StateAccess:
        return self

    def commit(self, batch: StateAccess) -> None:
        pass

    def get_meta(self, name: str) -> str | None:
        return self.meta.get(name)

    def set_meta(self, name: str, value: str) -> None:
        self.meta[name] = value

    def accounts_in_view(self) -> Iterator[list[str]]:
        yield [account for account, posts in self.views.items() if posts]

    def close(self) -> None:
        pass

    # StateAccess
    def get_account(self, account_id: str) -> AccountState | None:
        return self.accounts.get(account_id)

    def put_account(self, account_id: str, state: AccountState) -> None:
        self.accounts[account_id] = state

    def get_post(self, post_id: str) -> PostState | None:
        return self.posts.get(post_id)

    def put_post(self, post_id: str, state: PostState) -> None:
        self.posts[post_id] = state

    def view_get(self, account_id: str, post_id: str) -> int | None:
        posts = self.views.get(account_id)
        return None if posts is None else posts.get(post_id)

    def view_put(self, account_id: str, post_id: str, created_at: int) -> None:
        self.views.setdefault(account_id, {})[post_id] = created_at

    def view_del(self, account_id: str, post_id: str) -> None:
        posts = self.views.get(account_id)
        if posts is not None:
            posts.pop(post_id, None)
            if not posts:
                del self.views[account_id]

    def view_items(self, account_id: str) -> list[tuple[str, int]]:
        return list(self.views.get(account_id, {}).items())
