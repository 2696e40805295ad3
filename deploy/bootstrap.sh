#!/usr/bin/env bash
# Make a (fresh) Debian machine ready to develop and test: system packages, the .venv, the
# Kafka jars. Idempotent, and fast (no network) when everything is already there.
#
#   - apt (root only, and only if something is missing): redis-server, plus Java 17 / Maven /
#     python3-venv and prometheus (server + promtool) when absent
#   - .venv with python3.11 (>= 3.11), `pip install -e '.[test]'` whenever pyproject.toml
#     changed since the last successful install (stamp: .venv/.bootstrap-stamp)
#   - deploy/kafka.sh fetch (jars cached in ${ELIGIBILITY_CACHE:-~/.cache/eligibility})
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.bootstrap-stamp"
T0=$SECONDS

NAME=bootstrap
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "missing system packages: $*; as root run: apt-get update && apt-get install -y $*"
    fi
    have apt-get || die "missing system packages ($*) and no apt-get on this machine"
    export DEBIAN_FRONTEND=noninteractive
    if ((APT_UPDATED == 0)); then
        say "apt-get update"
        apt-get update -q
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    apt-get install -y -q --no-install-recommends "$@"
}

java_major() {
    have java || { echo 0; return; }
    local v
    v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
    echo "${v:-0}"
}

# A python >= 3.11 that can create venvs (Debian needs python3-venv for ensurepip).
find_python() {
    local py
    for py in python3.11 python3; do
        if have "$py" && "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    return 1
}

# --- system packages -------------------------------------------------------------------------
pkgs=()
have redis-server || pkgs+=(redis-server)
(($(java_major) >= 17)) || pkgs+=(openjdk-17-jre-headless)
have mvn || pkgs+=(maven)
# Prometheus (server + promtool): the alert-rule tests and the dashboard test run the real one.
have prometheus && have promtool || pkgs+=(prometheus)
if [[ ! -x "$VENV/bin/python" ]] && ! find_python >/dev/null; then
    pkgs+=(python3 python3-venv)
fi
if ((${#pkgs[@]} > 0)); then
    apt_install "${pkgs[@]}"
fi

# --- Python virtualenv -----------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    PY="$(find_python)" || die "no python >= 3.11 with venv support (apt-get install python3-venv)"
    say "creating $VENV with $PY ($("$PY" --version 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    say "pip install -e '.[test]' (pyproject.toml changed or first install)"
    (cd "$ROOT" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e '.[test]')
    printf '%s\n' "$want" >"$STAMP"
else
    say ".venv up to date with pyproject.toml"
fi

# --- Kafka jars ------------------------------------------------------------------------------
"$ROOT/deploy/kafka.sh" fetch

say "ready in $((SECONDS - T0)) s"
