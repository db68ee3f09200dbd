#!/usr/bin/env bash
# The floor for a whole `invoke db.reset --backend docker`, by hand with the docker CLI, doing
# what the task does: remove what the previous run left (`docker rm -f`, `docker volume rm`),
# then the compose service's container by a bare `docker run` on the engine at DOCKER_HOST (a
# fresh volume, the migrations bind-mounted read-only at the init directory, the settings of
# docker-compose.yml's defaults, the project's bridge network, the port on 127.0.0.1), then
# `pg_isready` every 50 ms until the final server answers; the server is left running, as the
# task leaves its own. Timed as a whole process beside the task, interleaved (each one's server
# idles while the other boots), it is what the task's whole command is held against
# (benchmarks/README.md, "The whole command against a bare docker run").
#
#   docker-run-floor.sh IMAGE NETWORK PORT      # then, when done: docker rm -f -v leaddb-floor-PORT
#
# Run from the repository (the migrations are ./api/db/migrations); NETWORK must exist (the
# task's `<project>_default`); PORT a free one on 127.0.0.1. pg_isready: the one on PATH, or
# PG_ISREADY.
set -eu
image=$1; network=$2; port=$3
name="leaddb-floor-$port"
isready="${PG_ISREADY:-pg_isready}"
docker rm -f -v "$name" >/dev/null 2>&1 || true
docker volume rm "$name" >/dev/null 2>&1 || true
docker volume create "$name" >/dev/null
docker run -d --name "$name" --network "$network" \
    -v "$name:/var/lib/postgresql/data" \
    -v "$PWD/api/db/migrations:/docker-entrypoint-initdb.d:ro" \
    -p "127.0.0.1:$port:5432" \
    -e POSTGRES_USER=postgres -e POSTGRES_PASSWORD=leadgen-dev-only -e POSTGRES_DB=leadgen \
    --health-cmd 'pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' \
    --health-interval 1s --health-timeout 3s --health-retries 60 --health-start-period 2s \
    "$image" >/dev/null
# the init server listens on the socket only: an answer on the published port is the final one
until "$isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
    sleep 0.05
done
