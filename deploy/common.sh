# Shared by the deploy scripts: `source` it after setting NAME (the prefix of every line).
# shellcheck shell=bash

say() { printf '%s: %s\n' "$NAME" "$*"; }
die() { printf '%s: ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; run deploy/bootstrap.sh first"
}
