#!/usr/bin/env bash
# CI: Docker as users have it, one step of .ci/run. The test suite runs on a tmpfs-backed engine
# (fast, throwaway); this step runs what users meet on a disk-backed engine, on a host that
# already runs Docker of its own:
#
#   the host: a network namespace of this run stands in for it, with what a host engine leaves
#     there: a `docker0` bridge (172.17.0.1/16), the FORWARD policy DROP, br_netfilter's
#     bridge-nf-call-iptables=1. Nothing of the real host is touched; the namespace goes at the
#     end, also on failure.
#   the engine: .ci/docker-engine.sh in that namespace, its data root on disk
#     (LEADDB_CI_DOCKER_TMPFS=0) and kept between runs, so the image is imported once.
#
# In it, in order:
#   1. the README's acceptance sequence with real Compose v2 (.ci/acceptance.sh): three first
#      boots on disk, the idempotent re-run, the \dt and \d+ checks, and a container on the
#      project network reaching postgres:5432 (which the FORWARD DROP would stop without the
#      engine's own rule);
#   2. the tasks on the same engine: `nox -s verify`, its backend left to `auto`, which must take
#      this engine (db.reset, db.reapply, … and a short bench:
#      LEADDB_CI_BENCH_RUNS, default 3; its verdict splits a missed target into the image's bare
#      boot, the migrations and the tool; a miss at this machine's floor exits 0, said), then
#      `invoke db.reapply` and `invoke db.down` by name;
#   3. the host as it was found, once the engine has stopped: docker0 with its address, every
#      route, every iptables rule and policy, and the sysctls a host engine depends on
#      (ip_forward, bridge-nf-call-*) as before the engine started; while it ran, no address of
#      its overlapped a route the host had. Any difference fails the step.
#
# Root, Linux (ip, nsenter, iptables, python3). DOCKER_CONFIG (Compose v2, .ci/compose-plugin.sh)
# and POSTGRES_IMAGE are taken from the caller's environment.
#   LEADDB_CI_INVOKE                  how to run invoke (default .nox/verify/bin/invoke)
#   LEADDB_CI_USERS_DOCKER_RUN_DIR    the engine's run dir (default /run/leaddb-ci-disk)
#   LEADDB_CI_USERS_DOCKER_DATA_ROOT  its data root, on disk (default /var/lib/leaddb-ci-disk/docker)
#   LEADDB_CI_USERS_DOCKER_GATE       a FIFO: once the acceptance sequence has passed, wait for a
#                                     line on it before step 2, whose bench times the tool and must
#                                     not share the machine with other work (.ci/run runs steps 1
#                                     and 3's engine in the background beside its Windows pass and
#                                     opens the gate after it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n[users-docker] %s\n' "$*"; }
fail() {
    printf '\n[users-docker] FAILED: %s\n' "$*" >&2
    exit 1
}

RUN_DIR="${LEADDB_CI_USERS_DOCKER_RUN_DIR:-/run/leaddb-ci-disk}"
DATA_ROOT="${LEADDB_CI_USERS_DOCKER_DATA_ROOT:-/var/lib/leaddb-ci-disk/docker}"
BENCH_RUNS="${LEADDB_CI_BENCH_RUNS:-3}"
read -r -a invoke <<<"${LEADDB_CI_INVOKE:-.nox/verify/bin/invoke}"
NS="leaddb-ci-host-$$"
NS_PATH="/run/netns/$NS"
engine_env=(env "LEADDB_CI_DOCKER_RUN_DIR=$RUN_DIR" "LEADDB_CI_DOCKER_DATA_ROOT=$DATA_ROOT" LEADDB_CI_DOCKER_TMPFS=0)
scratch="$(mktemp -d "${TMPDIR:-/tmp}/leaddb-users-docker.XXXXXX")"

# in the stand-in host's network namespace (nsenter, not `ip netns exec`: that one remounts /sys
# and hides the cgroup mounts dockerd needs)
on_host() { nsenter --net="$NS_PATH" "$@"; }

cleanup() {
    if [[ -e "$NS_PATH" ]]; then
        on_host "${engine_env[@]}" bash .ci/docker-engine.sh stop >/dev/null 2>&1 || true
        ip netns del "$NS" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# -- the host, as a host engine leaves it ---------------------------------------------------------
log "a stand-in host that runs Docker of its own: netns $NS with docker0 and FORWARD DROP"
ip netns add "$NS"
on_host ip link set lo up
on_host ip link add docker0 type bridge
on_host ip addr add 172.17.0.1/16 dev docker0
on_host ip link set docker0 up
on_host iptables -w -P FORWARD DROP
if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    on_host sh -c 'echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables'
else
    log "no br_netfilter here: bridged traffic does not pass iptables (the FORWARD DROP case is moot)"
fi

SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding
    net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.bridge.bridge-nf-call-arptables)
snapshot() { # what a host engine depends on, in a form two snapshots can be diffed in (IPv4:
    # the engine makes no IPv6 network, and docker0's IPv6 link-local address comes and goes
    # with the kernel's own timing)
    local out="$1"
    {
        echo "## interfaces"
        on_host ip -o link show | awk '{ print $2 }' | sort
        echo "## addresses"
        on_host ip -o -4 addr show | awk '{ print $2, $3, $4 }' | sort
        echo "## routes"
        on_host ip -4 route show table all | sort
        echo "## iptables"
        on_host iptables-save | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//'
        echo "## ip6tables"
        on_host ip6tables-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//' || true
        echo "## sysctls"
        for name in "${SYSCTLS[@]}"; do
            on_host sysctl -n "$name" 2>/dev/null | sed "s|^|$name = |" || true
        done
    } >"$out"
}
snapshot "$scratch/before"

# -- the engine, disk-backed ----------------------------------------------------------------------
started=$SECONDS
log "a disk-backed engine in it (data root $DATA_ROOT)"
on_host "${engine_env[@]}" bash .ci/docker-engine.sh start >/dev/null
on_host ip -o -4 addr show dev docker0 | grep -q ' 172.17.0.1/16 ' || fail "starting the engine took the host's docker0"
export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
on_host docker info --format 'engine: Docker {{.ServerVersion}}, storage driver {{.Driver}}, data root {{.DockerRootDir}}'
on_host bash docker/postgres15/build-image.sh
export POSTGRES_IMAGE="${POSTGRES_IMAGE:-leaddb/postgres:15-local}"
log "engine and image: $((SECONDS - started)) s"

# -- 1. the acceptance sequence -------------------------------------------------------------------
step=$SECONDS
on_host env LEADDB_CI_INVOKE="${invoke[*]}" bash .ci/acceptance.sh
log "acceptance sequence on disk: $((SECONDS - step)) s"

# while the engine runs (its project networks made): none of its addresses overlaps a host route
on_host python3 - "$scratch/before" <<'EOF' || fail "the engine's addresses overlap the host's routes (see above)"
import ipaddress, subprocess, sys

TYPES = ("local", "broadcast", "unicast", "unreachable", "blackhole", "prohibit", "throw", "multicast")
snapshot = open(sys.argv[1], encoding="utf-8").read()
routes = []
for line in snapshot.split("## routes\n")[1].split("## ")[0].splitlines():
    words = line.split()
    words = words[1:] if words and words[0] in TYPES else words
    if words and words[0] != "default":
        routes.append(ipaddress.ip_network(words[0], strict=False))
clashes = []
shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True)
for line in shown.stdout.splitlines():
    name, address = line.split()[1], ipaddress.ip_interface(line.split()[3])
    if name in ("lo", "docker0"):  # the host's own
        continue
    clashes += [f"{name} {address} overlaps the host's route {r}" for r in routes if address.network.overlaps(r)]
print("\n".join(clashes) or "no address of the engine overlaps a route the host had")
sys.exit(1 if clashes else 0)
EOF

# -- 2. the tasks by name, and the short bench ------------------------------------------------------
if [[ -n "${LEADDB_CI_USERS_DOCKER_GATE:-}" ]]; then
    step=$SECONDS
    log "waiting for the machine to be free of other work before the bench (the gate)"
    read -r _ <"$LEADDB_CI_USERS_DOCKER_GATE"
    log "gate open after $((SECONDS - step)) s"
fi
step=$SECONDS
log "the tasks by name: verify (reset, reapply, …, bench: $BENCH_RUNS runs), reapply, down"
on_host python -m nox -R -s verify -- --bench-runs "$BENCH_RUNS" | tee "$scratch/verify.log"
grep -q '^backend: docker (auto: engine at ' "$scratch/verify.log" || fail "verify's --backend auto did not take the engine"
on_host "${invoke[@]}" db.reapply --backend docker
on_host "${invoke[@]}" db.down --backend docker
log "tasks and bench on disk: $((SECONDS - step)) s"

# -- 3. the host as it was found --------------------------------------------------------------------
on_host "${engine_env[@]}" bash .ci/docker-engine.sh stop >/dev/null
snapshot "$scratch/after"
if ! diff -u "$scratch/before" "$scratch/after"; then
    fail "the engine left the host other than it found it (diff above: - before, + after)"
fi
grep -q '^docker0 inet 172.17.0.1/16$' "$scratch/after" || fail "the host's docker0 lost its address"
log "the host as found: docker0, routes, iptables rules and policies, sysctls ($((SECONDS - started)) s in all)"
