#!/usr/bin/env bash
# Local Redis (Debian's redis-server) on 127.0.0.1 for tests and the demo.
#
#   deploy/redis.sh start    daemonized, idempotent, waits for PING
#   deploy/redis.sh stop     SHUTDOWN NOSAVE, falls back to SIGTERM/SIGKILL
#   deploy/redis.sh status   exit 0 if answering PING, 3 if not running
#
# Environment: REDIS_PORT (16379), ELIGIBILITY_RUN (<repo>/.run),
#   REDIS_APPENDONLY (no; "yes" adds --appendfsync everysec, for durability tests).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${ELIGIBILITY_RUN:-$ROOT/.run}"
RDIR="$RUN/redis"
PIDFILE="$RDIR/redis.pid"
LOGDIR="$RUN/logs"
LOG="$LOGDIR/redis.log"
PORT="${REDIS_PORT:-16379}"
APPENDONLY="${REDIS_APPENDONLY:-no}"

NAME=redis
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ping_ok() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" == "PONG" ]]
}

# Prints the pid if our redis-server (pid file + live redis-server process) is running.
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    grep -q 'redis-server' "/proc/$pid/comm" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

cmd_start() {
    need redis-server
    need redis-cli
    local pid
    if pid="$(running_pid)"; then
        say "already running (pid $pid) on 127.0.0.1:$PORT"
        return 0
    fi
    if ping_ok; then
        die "127.0.0.1:$PORT answers PING but is not ours ($PIDFILE); set REDIS_PORT"
    fi
    mkdir -p "$RDIR" "$LOGDIR"
    local args=(
        --port "$PORT" --bind 127.0.0.1 --daemonize yes
        --pidfile "$PIDFILE" --dir "$RDIR" --logfile "$LOG"
        --save "" --appendonly "$APPENDONLY" --maxmemory-policy noeviction
    )
    if [[ "$APPENDONLY" == "yes" ]]; then
        args+=(--appendfsync everysec)
    fi
    redis-server "${args[@]}" || { tail -n 20 "$LOG" >&2 || true; die "redis-server failed to start"; }
    local deadline=$((SECONDS + 10))
    until ping_ok; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$LOG" >&2 || true
            die "no PONG on 127.0.0.1:$PORT within 10 s (log: $LOG)"
        fi
        sleep 0.2
    done
    say "ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), $(redis-server --version | grep -o 'v=[0-9.]*'))"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    say "stopping pid $pid"
    redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            say "SHUTDOWN did not stop it, sending SIGTERM/SIGKILL"
            kill -TERM "$pid" 2>/dev/null || true
            sleep 2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$PIDFILE"
    say "stopped"
}

cmd_status() {
    local pid
    if ! pid="$(running_pid)"; then
        say "not running"
        return 3
    fi
    if ping_ok; then
        say "running (pid $pid) on 127.0.0.1:$PORT"
    else
        say "running (pid $pid) but not answering PING on 127.0.0.1:$PORT"
        return 1
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) printf 'usage: %s {start|stop|status}\n' "$0" >&2; exit 2 ;;
esac
