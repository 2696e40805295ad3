"""Where the pseudonym key comes from: the environment or a file, never the command line."""

from __future__ import annotations

import os
from pathlib import Path

import click

from stream.core.pseudonym import Pseudonymizer

KEY_ENV = "ELIGIBILITY_PSEUDONYM_KEY"
KEY_FILE_ENV = "ELIGIBILITY_PSEUDONYM_KEY_FILE"


def load_pseudonymizer(*, allow_dev: bool) -> Pseudonymizer:
    """The configured key; without one, the development key if allowed (said on
    stderr, and every pseudonym it makes starts with `dev-`)."""
    key = os.environ.get(KEY_ENV)
    path = os.environ.get(KEY_FILE_ENV)
    if key is None and path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise click.ClickException(
                f"cannot read {KEY_FILE_ENV}={path}: {exc.strerror}"
            ) from None
    if key:
        try:
            return Pseudonymizer(key.encode("utf-8"))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if not allow_dev:
        raise click.ClickException(f"no pseudonym key: set {KEY_ENV} or {KEY_FILE_ENV}")
    click.echo(
        f"warning: no {KEY_ENV} or {KEY_FILE_ENV}: using the built-in development key; "
        "authors are marked dev- and the output is not for training",
        err=True,
    )
    return Pseudonymizer.development()
