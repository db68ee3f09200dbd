#!/usr/bin/env bash
# Build leaddb/postgres:15-local, a PostgreSQL 15 image made without pulling anything
# from a registry (Linux/CI only; root, a running engine reachable through DOCKER_HOST):
#   1. a Debian bookworm rootfs with postgresql-15 (mmdebstrap, minbase, no recommends),
#      cached as a tar under $LEADDB_CI_CACHE_DIR (default /var/cache/leaddb-ci);
#   2. `docker import` of that tar with the image config (PATH, PGDATA, CMD, ...);
#   3. a one-step `docker build` FROM the imported image that adds our entrypoint
#      (docker-entrypoint.sh, the official image's contract) and the build-key label.
# Everything is keyed by a hash of this script and the entrypoint: when the engine
# already has the tag with the same key, nothing is done. Safe to re-run.
#
# Tests select the image with POSTGRES_IMAGE=leaddb/postgres:15-local; the compose file
# keeps postgres:15 for users.
#
# Overridable: LEADDB_POSTGRES_IMAGE (tag), LEADDB_CI_CACHE_DIR, LEADDB_MMDEBSTRAP_MIRROR
# (a mirror URI or a sources.list file; default: mmdebstrap's own default).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG="${LEADDB_POSTGRES_IMAGE:-leaddb/postgres:15-local}"
CACHE_DIR="${LEADDB_CI_CACHE_DIR:-/var/cache/leaddb-ci}"
SUITE=bookworm
KEY_LABEL=org.leaddb.build-key

log() { printf 'build-image: %s\n' "$*" >&2; }

KEY="$(cat "$HERE/build-image.sh" "$HERE/docker-entrypoint.sh" | sha256sum | cut -c1-16)"
# the rootfs does not contain the entrypoint: editing the entrypoint reuses the cached tar
ROOTFS_KEY="$(sha256sum <"$HERE/build-image.sh" | cut -c1-16)"
ROOTFS="$CACHE_DIR/postgres15-$SUITE-$ROOTFS_KEY.tar"
BASE_TAG="leaddb/postgres-rootfs:15-$KEY"

if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    log "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); start one first: bash .ci/docker-engine.sh start"
    exit 1
fi

current="$(docker image inspect --format "{{ index .Config.Labels \"$KEY_LABEL\" }}" "$TAG" 2>/dev/null || true)"
if [[ "$current" == "$KEY" ]]; then
    log "$TAG is up to date (build key $KEY); nothing to do"
    exit 0
fi

if [[ ! -s "$ROOTFS" ]]; then
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        log "installing mmdebstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
    fi
    mkdir -p "$CACHE_DIR"
    log "building the $SUITE rootfs with postgresql-15 into $ROOTFS"
    mirrors=()
    if [[ -n "${LEADDB_MMDEBSTRAP_MIRROR:-}" ]]; then
        mirrors=("$LEADDB_MMDEBSTRAP_MIRROR")
    fi
    # customize: no packaged "main" cluster (the entrypoint makes its own in $PGDATA),
    # listen on every address by default as the official image does, smaller image.
    rm -rf "$ROOTFS.partial"
    mmdebstrap \
        --format=tar \
        --variant=minbase \
        --include=postgresql-15 \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15' \
        --customize-hook='sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '"'*'"'!" "$1"/usr/share/postgresql/15/postgresql.conf.sample' \
        --customize-hook='grep -qF "listen_addresses = '"'*'"'" "$1"/usr/share/postgresql/15/postgresql.conf.sample' \
        --customize-hook='mkdir -p "$1"/var/lib/postgresql/data "$1"/var/run/postgresql "$1"/docker-entrypoint-initdb.d' \
        --customize-hook='chroot "$1" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql' \
        --customize-hook='chmod 03775 "$1"/var/run/postgresql; chmod 00700 "$1"/var/lib/postgresql/data' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$SUITE" "$ROOTFS.partial" "${mirrors[@]}" </dev/null
    mv "$ROOTFS.partial" "$ROOTFS"
    # older keys' tars are dead weight
    find "$CACHE_DIR" -maxdepth 1 -name "postgres15-$SUITE-*.tar" ! -name "$(basename "$ROOTFS")" -delete
else
    log "using the cached rootfs $ROOTFS"
fi

log "importing $ROOTFS as $BASE_TAG"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'VOLUME /var/lib/postgresql/data' \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change 'EXPOSE 5432' \
    "$ROOTFS" "$BASE_TAG" >/dev/null

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
install -m 0755 "$HERE/docker-entrypoint.sh" "$context/docker-entrypoint.sh"
cat >"$context/Dockerfile" <<EOF
FROM $BASE_TAG
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
STOPSIGNAL SIGINT
LABEL $KEY_LABEL="$KEY" org.opencontainers.image.description="PostgreSQL 15 on Debian $SUITE, official-image entrypoint contract (leaddb tests)"
EOF
log "adding the entrypoint; tagging $TAG"
# DOCKER_BUILDKIT=0: the classic builder needs no buildx plugin and no network
previous="$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
DOCKER_BUILDKIT=0 docker build --quiet -t "$TAG" "$context" >/dev/null 2>"$context/build.log" ||
    { cat "$context/build.log" >&2; exit 1; }
docker image rm "$BASE_TAG" >/dev/null 2>&1 || true
# the image this tag named before (an older build key) is ours and now unused
if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{.Id}}' "$TAG")" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
log "built $TAG (build key $KEY)"
