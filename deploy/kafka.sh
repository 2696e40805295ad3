#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, run straight from the
# Maven Central jars -- no Docker, no tarball.
#
#   deploy/kafka.sh fetch    download broker + runtime deps once into the cache (idempotent)
#   deploy/kafka.sh start    format storage on first start, start in background, wait until ready
#   deploy/kafka.sh stop     SIGTERM, wait, SIGKILL if needed
#   deploy/kafka.sh status   exit 0 if running and answering metadata requests, 3 if not running
#   deploy/kafka.sh logs [-f]
#
# Environment:
#   KAFKA_PORT (19092)  KAFKA_CONTROLLER_PORT (19093)  ELIGIBILITY_RUN (<repo>/.run)
#   ELIGIBILITY_CACHE (~/.cache/eligibility)  KAFKA_HEAP_OPTS (-Xmx512m -Xms256m)
#   KAFKA_START_TIMEOUT (60 s)  KAFKA_STOP_TIMEOUT (30 s)
set -euo pipefail

# Kafka 4.0.x, newest patch on Maven Central (4.0.2 at the time of writing). Why 4.0 and not
# 4.1+: faust-streaming's client, aiokafka 0.14, is run against Kafka 4.0 by its maintainers
# (faust-streaming issue #655 / PR #714), and 4.x brokers need Java 17, which Debian 12 ships.
# Keep in sync with <kafka.version> in deploy/kafka/pom.xml (passed explicitly below anyway).
KAFKA_VERSION="${KAFKA_VERSION:-4.0.2}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ELIGIBILITY_CACHE:-$HOME/.cache/eligibility}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
LIB="$KAFKA_HOME/lib"
MARKER="$KAFKA_HOME/.fetched"
M2_REPO="$CACHE/m2"

RUN="${ELIGIBILITY_RUN:-$ROOT/.run}"
KDIR="$RUN/kafka"
DATA="$KDIR/data"
PROPS="$KDIR/server.properties"
LOG4J="$KDIR/log4j2.properties"
PIDFILE="$KDIR/kafka.pid"
LOGDIR="$RUN/logs"
LOG="$LOGDIR/kafka.log"

PORT="${KAFKA_PORT:-19092}"
CPORT="${KAFKA_CONTROLLER_PORT:-19093}"
BOOTSTRAP="127.0.0.1:$PORT"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

NAME=kafka
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

is_fetched() {
    [[ -f "$MARKER" && "$(cat "$MARKER")" == "$KAFKA_VERSION" && -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

cmd_fetch() {
    if is_fetched; then
        say "kafka $KAFKA_VERSION already in $LIB"
        return 0
    fi
    need java
    need mvn
    say "fetching kafka_2.13 $KAFKA_VERSION + runtime deps from Maven Central into $LIB"
    local t0=$SECONDS tmp="$KAFKA_HOME/lib.partial"
    mkdir -p "$KAFKA_HOME"
    rm -rf "$tmp"
    # Own local repository under the cache: nothing outside the repo but the cache is touched.
    mvn -q -B -Dstyle.color=never -f "$ROOT/deploy/kafka/pom.xml" \
        -Dmaven.repo.local="$M2_REPO" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$KAFKA_HOME/fetch.log" 2>&1 \
        || { tail -n 30 "$KAFKA_HOME/fetch.log" >&2; die "mvn dependency:copy-dependencies failed (network to Maven Central?)"; }
    local jar
    for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
               "kafka-server-$KAFKA_VERSION.jar" "kafka-raft-$KAFKA_VERSION.jar"; do
        [[ -f "$tmp/$jar" ]] || die "fetch incomplete: $jar missing from $tmp"
    done
    compgen -G "$tmp/log4j-core-*.jar" >/dev/null || die "fetch incomplete: log4j-core missing"
    compgen -G "$tmp/log4j-slf4j2-impl-*.jar" >/dev/null || die "fetch incomplete: log4j-slf4j2-impl missing"
    rm -rf "$LIB"
    mv "$tmp" "$LIB"
    printf '%s\n' "$KAFKA_VERSION" >"$MARKER"
    say "fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $((SECONDS - t0)) s"
}

# Prints the pid if our broker is running (pid file + live process that is kafka.Kafka).
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A real metadata request. Prefers confluent-kafka (repo venv, then system python); falls back
# to kafka-clients' Admin via a Java single-file program, so this script has no Python dependency.
metadata_ok() {
    local py
    for py in "$ROOT/.venv/bin/python" python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import confluent_kafka' 2>/dev/null; then
            "$py" - "$BOOTSTRAP" <<'PY' >/dev/null 2>&1
import sys

from confluent_kafka.admin import AdminClient

md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=5)
sys.exit(0 if md.brokers else 1)
PY
            return
        fi
    done
    local src="$KDIR/MetadataCheck.java"
    cat >"$src" <<'JAVA'
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;

public class MetadataCheck {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("request.timeout.ms", "5000");
        p.put("default.api.timeout.ms", "5000");
        try (Admin admin = Admin.create(p)) {
            System.exit(admin.describeCluster().nodes().get().isEmpty() ? 1 : 0);
        }
    }
}
JAVA
    java -Xmx64m -cp "$LIB/*" "$src" "$BOOTSTRAP" >/dev/null 2>&1
}

write_config() {
    mkdir -p "$DATA" "$LOGDIR"
    cat >"$LOG4J" <<'EOF'
# Generated by deploy/kafka.sh. Everything goes to stdout, which start redirects to logs/kafka.log.
name = kafka
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
    cat >"$PROPS" <<EOF
# Generated by deploy/kafka.sh on every start -- edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# Single node: every replication factor / ISR is 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions: faster first group join / first transaction on a 2-core box.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8

# Test-friendly behaviour.
num.partitions=1
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# Messages up to 2 MiB (+ headroom).
message.max.bytes=4194304
replica.fetch.max.bytes=4194304

# Combined mode: after a restart the controller rejects the new broker incarnation
# (DUPLICATE_BROKER_REGISTRATION) until the old session expires -- 9 s by default.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

num.network.threads=2
num.io.threads=4
EOF
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        say "already running (pid $pid) on $BOOTSTRAP"
        wait_ready "$pid"
        return 0
    fi
    rm -f "$PIDFILE"
    need java
    is_fetched || cmd_fetch
    if port_open "$PORT" || port_open "$CPORT"; then
        die "port $PORT or $CPORT on 127.0.0.1 is taken by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
    fi
    write_config
    local cp="$LIB/*"
    if [[ ! -f "$DATA/meta.properties" ]]; then
        local cluster_id
        cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>>"$LOG" | tail -n 1)"
        [[ -n "$cluster_id" ]] || die "StorageTool random-uuid failed; see $LOG"
        say "formatting $DATA (cluster id $cluster_id)"
        java -cp "$cp" -Dlog4j2.configurationFile="$LOG4J" kafka.tools.StorageTool format \
            -t "$cluster_id" -c "$PROPS" >>"$LOG" 2>&1 \
            || { tail -n 30 "$LOG" >&2; die "storage format failed"; }
    fi
    printf '\n===== %s start (kafka %s, %s) =====\n' "$(date -Is)" "$KAFKA_VERSION" "$BOOTSTRAP" >>"$LOG"
    local t0=$SECONDS
    # word splitting of HEAP_OPTS is intended
    # shellcheck disable=SC2086
    nohup setsid java $HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J" -Dlog4j2.shutdownHookEnabled=false \
        -Dkafka.logs.dir="$LOGDIR" -cp "$cp" kafka.Kafka "$PROPS" >>"$LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"
    say "started pid $pid, log $LOG; waiting for $BOOTSTRAP"
    wait_ready "$pid"
    say "ready on $BOOTSTRAP in $((SECONDS - t0)) s"
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            tail -n 40 "$LOG" >&2 || true
            die "broker exited during start-up (log: $LOG)"
        fi
        if port_open "$PORT" && metadata_ok; then
            return 0
        fi
        sleep 0.5
    done
    tail -n 40 "$LOG" >&2 || true
    die "not ready within ${START_TIMEOUT} s (pid $pid still running; log: $LOG)"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    say "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "still alive after ${STOP_TIMEOUT} s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PIDFILE"
    say "stopped"
}

cmd_status() {
    local pid
    if ! pid="$(running_pid)"; then
        say "not running"
        return 3
    fi
    if port_open "$PORT" && metadata_ok; then
        say "running (pid $pid) on $BOOTSTRAP, kafka $KAFKA_VERSION, answering metadata requests"
    else
        say "running (pid $pid) but not answering on $BOOTSTRAP yet"
        return 1
    fi
}

cmd_logs() {
    [[ -f "$LOG" ]] || die "no log yet at $LOG"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 100 -F "$LOG"
    fi
    tail -n "${LINES:-200}" "$LOG"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    logs) shift; cmd_logs "$@" ;;
    *) printf 'usage: %s {fetch|start|stop|status|logs [-f]}\n' "$0" >&2; exit 2 ;;
esac
