#!/usr/bin/env bash
# A private Docker engine for CI: `start` installs Debian's docker.io when dockerd is
# missing and runs dockerd in the background with its own data root, exec root, pid
# file and socket; `stop` ends it and waits. The data root persists, so images built
# by docker/postgres15/build-image.sh stay cached between CI runs on one machine.
#
# Networking: --bridge=none --iptables=false, so the engine makes no default bridge and
# writes no firewall rules. Compose projects get a bridge network of their own
# (`<project>_default`, as `docker compose up` and the docker backend create it), and
# published ports are forwarded by docker-proxy on 127.0.0.1 only: what Docker Desktop
# users get.
#
#   bash .ci/docker-engine.sh start
#   export DOCKER_HOST=unix:///run/leaddb-ci/docker.sock
#   ...
#   bash .ci/docker-engine.sh stop
#   bash .ci/docker-engine.sh running   # exit 0 when this engine already runs
#
# The data root is a tmpfs (LEADDB_CI_DOCKER_TMPFS=0 keeps it on disk): this machine's
# disk is slow at small-file work (copying a 7 MB database directory takes ~0.35 s here,
# 13 ms on tmpfs) and every CI volume is throwaway. (A tmpfs over <data root>/volumes
# alone does not work: dockerd bind-mounts its data root over itself and hides it.) The
# image is not lost with it: docker/postgres15/build-image.sh keeps the rootfs tar on
# disk and re-imports it in seconds.
#
# Overridable: LEADDB_CI_DOCKER_DATA_ROOT, LEADDB_CI_DOCKER_RUN_DIR, LEADDB_CI_DOCKER_TIMEOUT,
# LEADDB_CI_DOCKER_TMPFS.
set -euo pipefail

DATA_ROOT="${LEADDB_CI_DOCKER_DATA_ROOT:-/var/lib/leaddb-ci/docker}"
RUN_DIR="${LEADDB_CI_DOCKER_RUN_DIR:-/run/leaddb-ci}"
SOCKET="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
EXEC_ROOT="$RUN_DIR/exec"
LOG="$RUN_DIR/dockerd.log"
TIMEOUT="${LEADDB_CI_DOCKER_TIMEOUT:-60}"
DATA_ROOT_TMPFS="${LEADDB_CI_DOCKER_TMPFS:-1}"
HOST="unix://$SOCKET"

log() { printf 'docker-engine: %s\n' "$*" >&2; }

running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

answers() {
    # `docker version` needs the CLI; curl over the socket is a fallback without it.
    if command -v docker >/dev/null 2>&1; then
        docker -H "$HOST" version --format '{{.Server.Version}}' >/dev/null 2>&1
    else
        curl -fsS --unix-socket "$SOCKET" http://localhost/_ping >/dev/null 2>&1
    fi
}

install_engine() {
    if command -v dockerd >/dev/null 2>&1; then
        return
    fi
    if [[ "$(id -u)" != 0 ]]; then
        log "dockerd is missing and installing docker.io needs root"
        exit 1
    fi
    log "installing Debian's docker.io"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
}

start() {
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid) at $HOST"
    else
        install_engine
        mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
        chmod 0700 "$RUN_DIR"
        if [[ "$DATA_ROOT_TMPFS" == 1 ]] && ! mountpoint -q "$DATA_ROOT"; then
            mount -t tmpfs -o size=8g,mode=0710 leaddb-ci-docker "$DATA_ROOT"
        fi
        local flags=(
            --data-root "$DATA_ROOT"
            --exec-root "$EXEC_ROOT"
            --pidfile "$PIDFILE"
            -H "$HOST"
            --storage-driver=overlay2
            --bridge=none
            --iptables=false
        )
        if dockerd --help 2>&1 | grep -q -- '--ip6tables'; then
            flags+=(--ip6tables=false)
        fi
        log "starting dockerd (data root $DATA_ROOT, log $LOG)"
        # setsid: the engine outlives this script and leaves the caller's process group
        setsid dockerd "${flags[@]}" >"$LOG" 2>&1 </dev/null &
        pid=$!
    fi
    local tenths=0
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd exited; last log lines:"
            tail -n 30 "$LOG" >&2 || true
            exit 1
        fi
        if ((tenths >= TIMEOUT * 10)); then
            log "dockerd did not answer at $HOST within ${TIMEOUT}s; last log lines:"
            tail -n 30 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.1
        tenths=$((tenths + 1))
    done
    log "ready at $HOST"
    echo "export DOCKER_HOST=$HOST"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        return 0
    fi
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            release_mounts
            log "stopped"
            return 0
        fi
        sleep 0.1
    done
    log "dockerd (pid $pid) still running after 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    release_mounts
}

# dockerd leaves its default network namespace mounted under the exec root; the
# data root's tmpfs goes with the engine
release_mounts() {
    local target
    while mountpoint -q "$DATA_ROOT"; do
        umount "$DATA_ROOT" 2>/dev/null || break
    done
    while read -r target; do
        umount "$target" 2>/dev/null || true
    done < <(awk -v root="$RUN_DIR/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r)
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    running) running_pid >/dev/null ;;
    *)
        echo "usage: $0 start|stop|running" >&2
        exit 2
        ;;
esac
