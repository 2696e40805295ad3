#!/usr/bin/env bash
# Local Kafka + Redis for tests and the demo: deploy/services.sh {start|stop|status}
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

case "${1:-}" in
    start)
        "$HERE/redis.sh" start
        "$HERE/kafka.sh" start
        ;;
    stop)
        # Stop both even if one of them fails.
        rc=0
        "$HERE/kafka.sh" stop || rc=$?
        "$HERE/redis.sh" stop || rc=$?
        exit "$rc"
        ;;
    status)
        rc=0
        "$HERE/kafka.sh" status || rc=$?
        "$HERE/redis.sh" status || rc=$?
        exit "$rc"
        ;;
    *)
        printf 'usage: %s {start|stop|status}\n' "$0" >&2
        exit 2
        ;;
esac
