#!/usr/bin/env bash
# A private Docker engine for CI: `start` installs Debian's docker.io when dockerd is
# missing and runs dockerd in the background with its own data root, exec root, pid
# file and socket; `stop` ends it and waits. The data root persists, so images built
# by docker/postgres15/build-image.sh stay cached between CI runs on one machine.
#
#   bash .ci/docker-engine.sh start
#   export DOCKER_HOST=unix:///run/leaddb-ci/docker.sock
#   ...
#   bash .ci/docker-engine.sh stop
#   bash .ci/docker-engine.sh running   # exit 0 when this engine already runs
#
# Networking: the host may run a Docker engine of its own (a developer's workstation); this one
# must neither break it nor be broken by it (.ci/users-docker.sh checks both on every CI run):
#   - its default bridge is an interface of its own (`ldb<hash of the run dir>`, made here and
#     removed on stop): with --bridge=none, dockerd deletes any interface named docker0, the
#     host engine's; and its address pool is a 10.N.0.0/16 of its own that no route of the host
#     overlaps (dockerd 20.10 hands out 172.17.0.0/16 and up to user networks without looking at
#     the host's routes: the host engine's docker0 and networks);
#   - --iptables=false --ip6tables=false --ip-forward=false: it writes no firewall rule, chain or
#     policy and no sysctl of the host. On a host whose engine set the FORWARD policy to DROP
#     (Docker's default), with br_netfilter's bridge-nf-call-iptables=1, containers on one of its
#     bridge networks could not reach each other; so start inserts one rule, first in FORWARD,
#     that accepts traffic from its pool to its pool (nothing else), commented with the run
#     dir, and stop removes it (and every interface with an address in the pool).
# Compose projects get a bridge network of their own (`<project>_default`, as `docker compose
# up` and the docker backend create it), and published ports are forwarded by docker-proxy on
# 127.0.0.1 only: what Docker Desktop users get.
#
# The data root is a tmpfs (LEADDB_CI_DOCKER_TMPFS=0 keeps it on disk, as users have it): this
# machine's disk is slow at small-file work (copying a 7 MB database directory takes ~0.35 s
# here, 13 ms on tmpfs) and every CI volume is throwaway. (A tmpfs over <data root>/volumes
# alone does not work: dockerd bind-mounts its data root over itself and hides it.) The image is
# not lost with it: docker/postgres15/build-image.sh keeps the rootfs tar on disk and re-imports
# it in seconds. The engine's network records are throwaway too: removed before each start, so
# that dockerd finds no stale default bridge to clear (clearing it also deletes docker0), and
# with them the containers a previous run left on a disk-backed data root (images and volumes
# stay).
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
NETWORK_STATE="$RUN_DIR/network.env" # BRIDGE and POOL of the running engine, for stop
TIMEOUT="${LEADDB_CI_DOCKER_TIMEOUT:-60}"
DATA_ROOT_TMPFS="${LEADDB_CI_DOCKER_TMPFS:-1}"
HOST="unix://$SOCKET"
RUN_ID="$(printf '%s' "$RUN_DIR" | sha256sum | cut -c1-8)"
BRIDGE="ldb$RUN_ID" # at most 15 characters, as Linux wants
RULE_COMMENT="leaddb-ci engine $RUN_DIR"

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

# -- the engine's own addresses ------------------------------------------------------------------

ip_to_int() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '%s\n' "$(((a << 24) | (b << 16) | (c << 8) | d))"
}

# overlaps CIDR CIDR: whether the two IPv4 networks share an address
overlaps() {
    local a="${1%/*}" alen="${1#*/}" b="${2%/*}" blen="${2#*/}"
    [[ "$1" == */* ]] || alen=32
    [[ "$2" == */* ]] || blen=32
    local len=$((alen < blen ? alen : blen))
    local mask=$(((0xFFFFFFFF << (32 - len)) & 0xFFFFFFFF))
    (($(($(ip_to_int "$a") & mask)) == $(($(ip_to_int "$b") & mask))))
}

# A 10.N.0.0/16 (N from 200 to 254, starting at a place of this run dir's own) that overlaps no
# route of the host but the default one: not the host engine's networks, nor a VPN's, nor
# another CI engine's (each claims its pool at once with the route of its bridge).
pick_pool() {
    local routes start n i pool clash
    # `ip route` lines start with the destination, or with a route type and then the destination
    routes="$(ip -4 route show table all 2>/dev/null | awk '
        $1 ~ /^(unicast|local|broadcast|multicast|throw|unreachable|prohibit|blackhole|nat|anycast)$/ { $1 = $2 }
        $1 != "default" { print $1 }')"
    start=$((16#${RUN_ID:0:4} % 55))
    for ((i = 0; i < 55; i++)); do
        n=$((200 + (start + i) % 55))
        pool="10.$n.0.0/16"
        clash=0
        while read -r route; do
            [[ -n "$route" ]] || continue
            if overlaps "$pool" "$route"; then
                clash=1
                break
            fi
        done <<<"$routes"
        if ((clash == 0)); then
            printf '%s\n' "$pool"
            return 0
        fi
    done
    log "no 10.N.0.0/16 (N = 200..254) is free of the host's routes; cannot give the engine addresses of its own"
    return 1
}

has_iptables() { command -v iptables >/dev/null 2>&1 && iptables -w -S FORWARD >/dev/null 2>&1; }

forward_rule() { printf '%s\n' FORWARD -s "$1" -d "$1" -m comment --comment "$RULE_COMMENT" -j ACCEPT; }

remove_forward_rule() {
    local pool="$1" rule
    has_iptables || return 0
    mapfile -t rule < <(forward_rule "$pool")
    while iptables -w -D "${rule[@]}" 2>/dev/null; do :; done
}

setup_network() {
    local pool gateway rule
    # what a stopped engine of this run dir left (killed before its stop)
    teardown_network
    pool="$(pick_pool)"
    gateway="${pool%.0.0/16}.0.1/24"
    ip link add "$BRIDGE" type bridge
    ip addr add "$gateway" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    if has_iptables; then
        mapfile -t rule < <(forward_rule "$pool")
        iptables -w -I "${rule[0]}" 1 "${rule[@]:1}"
    else
        log "no iptables here: no FORWARD rule needed or added"
    fi
    printf 'BRIDGE=%s\nPOOL=%s\n' "$BRIDGE" "$pool" >"$NETWORK_STATE"
    FLAGS+=(--bridge="$BRIDGE" --default-address-pool "base=$pool,size=24")
    log "its own bridge $BRIDGE ($gateway) and address pool $pool (FORWARD accepts $pool to $pool)"
}

# every interface with an IPv4 address in the pool (its bridges; veths have none on the host)
interfaces_in() {
    ip -o -4 addr show 2>/dev/null | while read -r _ name _ cidr _; do
        if overlaps "$1" "${cidr%/*}/32"; then
            printf '%s\n' "${name%%@*}"
        fi
    done | sort -u
}

teardown_network() {
    local pool="" name
    if [[ -f "$NETWORK_STATE" ]]; then
        pool="$(sed -n 's/^POOL=//p' "$NETWORK_STATE")"
    fi
    if [[ -n "$pool" ]]; then
        remove_forward_rule "$pool"
        while read -r name; do
            [[ -n "$name" ]] && ip link del "$name" 2>/dev/null || true
        done < <(interfaces_in "$pool")
    fi
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -f "$NETWORK_STATE"
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
        # the network records of the last run: their default bridge would be "stale", and dockerd
        # clears a stale default bridge by deleting docker0 too (20.10, with address pools); the
        # containers of the last run go too, below (their networks are gone with the records)
        leftovers=0
        if [[ -e "$DATA_ROOT/network/files/local-kv.db" ]]; then
            leftovers=1
            rm -f "$DATA_ROOT/network/files/local-kv.db"
        fi
        FLAGS=(
            --data-root "$DATA_ROOT"
            --exec-root "$EXEC_ROOT"
            --pidfile "$PIDFILE"
            -H "$HOST"
            --storage-driver=overlay2
            --iptables=false
            --ip-forward=false
        )
        if dockerd --help 2>&1 | grep -q -- '--ip6tables'; then
            FLAGS+=(--ip6tables=false)
        fi
        setup_network
        log "starting dockerd (data root $DATA_ROOT, log $LOG)"
        # setsid: the engine outlives this script and leaves the caller's process group
        setsid dockerd "${FLAGS[@]}" >"$LOG" 2>&1 </dev/null &
        pid=$!
    fi
    local tenths=0
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd exited; last log lines:"
            tail -n 30 "$LOG" >&2 || true
            teardown_network
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
    if ((${leftovers:-0})) && command -v docker >/dev/null 2>&1; then
        local stale
        mapfile -t stale < <(docker -H "$HOST" ps -aq)
        if ((${#stale[@]})); then
            log "removing ${#stale[@]} container(s) a previous run left (their networks went with its records)"
            docker -H "$HOST" rm -f "${stale[@]}" >/dev/null
        fi
    fi
    log "ready at $HOST"
    echo "export DOCKER_HOST=$HOST"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        teardown_network # what a killed engine left
        return 0
    fi
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            release_mounts
            teardown_network
            log "stopped"
            return 0
        fi
        sleep 0.1
    done
    log "dockerd (pid $pid) still running after 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    release_mounts
    teardown_network
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
