#!/usr/bin/env bash
# CI: the user's acceptance sequence, run as written. The commands are the README's POSIX block
# after `<!-- ci:acceptance -->` (section "Database: Apply Migrations"), taken from there at run
# time so the two cannot drift, and run with `docker compose` against the engine at DOCKER_HOST.
# Then, by name:
#   - every docker command of the block succeeded (each one's output is in the log);
#   - `\dt` lists exactly the 13 tables the migrations create;
#   - `\d+ leads` shows the idempotency and duplicate-detection columns, constraints and
#     indexes, each in its section; `\d+ sources` and `\d+ offers` describe their tables;
#   - another service on the project network reaches it as `postgres:5432` (a container of the
#     same image running `pg_isready -h postgres` on `<project>_default`, as an app container
#     of the user's would): on a host whose FORWARD policy is DROP this needs the CI engine's
#     own rule (.ci/docker-engine.sh);
#   - the sequence's container is the one the tasks' Docker backend manages:
#     `invoke db.introspect --backend docker` reads it, `invoke db.down --backend docker`
#     removes it and its volume.
#
# `docker compose` must be the real Compose v2 (CI installs it: .ci/compose-plugin.sh); anything
# else is refused, so this never passes on a stand-in.
#
# Uses the compose project of the compose file (`name: leadgen`) and POSTGRES_PORT (5432) as
# users get them, so on a shared engine set COMPOSE_PROJECT_NAME and POSTGRES_PORT first: the
# block runs `docker compose down -v` of that project. When 127.0.0.1:5432 is taken (by another
# project) and POSTGRES_PORT is unset, another port is chosen, as the README tells users to.
#
#   LEADDB_CI_INVOKE   how to run invoke (default .nox/verify/bin/invoke)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n[acceptance] %s\n' "$*"; }
fail() {
    printf '\n[acceptance] FAILED: %s\n' "$*" >&2
    exit 1
}

scratch="$(mktemp -d "${TMPDIR:-/tmp}/leaddb-acceptance.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# -- docker compose ------------------------------------------------------------------------------
version="$(docker compose version --short 2>/dev/null)" ||
    fail "docker compose does not answer: install Compose v2 as the docker CLI's plugin (in CI: eval \"\$(bash .ci/compose-plugin.sh)\")"
[[ "$version" == 2.* || "$version" == v2.* ]] || fail "docker compose is version $version, not Compose v2"
log "docker compose: $(docker compose version)"

# -- the README's block ----------------------------------------------------------------------------
block="$(awk '
    $0 == "<!-- ci:acceptance -->" { armed = 1; next }
    armed && /^```/ { if (inside) exit; inside = 1; next }
    armed && inside { print }
' README.md)"
[[ -n "$block" ]] || fail "README.md has no code block after <!-- ci:acceptance -->"

project="${COMPOSE_PROJECT_NAME:-$(sed -n -E 's/^name:[[:space:]]*([A-Za-z0-9_-]+).*/\1/p' docker-compose.yml)}"
[[ -n "$project" ]] || fail "no project name: docker-compose.yml lost its top-level name:"
# (a container of the project itself, left by `invoke db.reset`, is the block's to replace)
if [[ -z "${POSTGRES_PORT:-}" && -z "$(docker compose ps -q 2>/dev/null)" ]] &&
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    POSTGRES_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    export POSTGRES_PORT
    log "127.0.0.1:5432 is taken: POSTGRES_PORT=$POSTGRES_PORT (as the README's quickstart says)"
fi
log "project $project, image ${POSTGRES_IMAGE:-postgres:15}, port 127.0.0.1:${POSTGRES_PORT:-5432}; the block:"
printf '%s\n' "$block"

# Each `docker` call of the block is recorded (arguments, output, exit status) and echoed to the
# log; the block itself runs unchanged.
record="$scratch/record"
mkdir "$record"
recorder='
calls=0
docker() {
    calls=$((calls + 1))
    printf "%s\n" "$@" >"$LEADDB_RECORD/$calls.argv"
    printf "\n$ docker %s\n" "$*"
    command docker "$@" 2>&1 | tee "$LEADDB_RECORD/$calls.out"
    local status=${PIPESTATUS[0]}
    printf "%s\n" "$status" >"$LEADDB_RECORD/$calls.status"
    return "$status"
}
'
log "running the block"
block_status=0
LEADDB_RECORD="$record" bash -e -c "$recorder$block" || block_status=$?

# -- what the block did ------------------------------------------------------------------------
failed=()
calls=0
while [[ -e "$record/$((calls + 1)).status" ]]; do
    calls=$((calls + 1))
    if [[ "$(cat "$record/$calls.status")" != 0 ]]; then
        failed+=("  docker $(paste -sd ' ' "$record/$calls.argv") (exit $(cat "$record/$calls.status"))")
    fi
done
((calls > 0)) || fail "the block ran no docker command"
((${#failed[@]} == 0)) || fail "the README's POSIX acceptance block (section \"Database: Apply Migrations\"): $(
    printf '%s\n' "" "${failed[@]}")"
[[ "$block_status" == 0 ]] || fail "the block exited with status $block_status"

# the output of the call whose last argument is $1 (`-c "\dt"` and the like)
output_of() {
    local argv
    for argv in "$record"/*.argv; do
        if [[ "$(tail -n 1 "$argv")" == "$1" ]]; then
            cat "${argv%.argv}.out"
            return
        fi
    done
    fail "the block has no command ending in \"$1\""
}

log "checking \\dt"
expected_tables="$(grep -ho -E 'CREATE TABLE IF NOT EXISTS [a-z_]+' api/db/migrations/*.sql | awk '{ print $NF }' | sort)"
listed_tables="$(output_of '\dt' | awk -F'|' '$3 ~ /^ *table *$/ { gsub(/ /, "", $1); gsub(/ /, "", $2); print $1 "." $2 }' | sort)"
[[ "$(wc -l <<<"$expected_tables")" == 13 ]] || fail "the migrations create $(wc -l <<<"$expected_tables") tables, not 13"
[[ "$listed_tables" == "$(sed 's/^/public./' <<<"$expected_tables")" ]] ||
    fail "\\dt lists other tables than the migrations create:
$(diff <(sed 's/^/public./' <<<"$expected_tables") <(printf '%s\n' "$listed_tables") || true)"
output_of '\dt' | grep -q '^(13 rows)$' || fail "\\dt does not end with (13 rows)"

log "checking \\d+ leads"
leads="$(output_of '\d+ leads')"
# "<section>|<name>" for every constraint and index line, "column|<name>|<nullable>" per column
described="$(awk '
    /^[A-Za-z-]+( [a-z-]+)*:$/ { section = $0; next }
    section == "" && /^ [a-z_]+ +\|/ { split($0, f, "|"); gsub(/ /, "", f[1]); gsub(/^ +| +$/, "", f[4]); print "column|" f[1] "|" f[4]; next }
    section != "" && /^    "/ { split($0, f, "\""); print section "|" f[2] }
' <<<"$leads")"
for want in \
    'column|idempotency_key|not null' \
    'column|dedupe_key|not null' \
    'column|duplicate_of_lead_id|' \
    'Indexes:|leads_source_idempotency_key_key' \
    'Indexes:|leads_dedupe_key_received_at_idx' \
    'Check constraints:|leads_idempotency_key_length_check' \
    'Check constraints:|leads_dedupe_key_format_check' \
    'Check constraints:|leads_duplicate_of_status_check' \
    'Check constraints:|leads_duplicate_of_not_self_check' \
    'Foreign-key constraints:|leads_duplicate_of_fkey'; do
    grep -qxF -- "$want" <<<"$described" || fail "\\d+ leads does not show $want; it shows:
$leads"
done
grep -qF '"leads_source_idempotency_key_key" UNIQUE CONSTRAINT, btree (source_id, idempotency_key)' <<<"$leads" ||
    fail "leads_source_idempotency_key_key is not the unique (source_id, idempotency_key)"
grep -qF '"leads_dedupe_key_received_at_idx" btree (dedupe_key, received_at)' <<<"$leads" ||
    fail "leads_dedupe_key_received_at_idx is not on (dedupe_key, received_at)"
grep -qF '"leads_duplicate_of_fkey" FOREIGN KEY (duplicate_of_lead_id) REFERENCES leads(id) ON DELETE RESTRICT' <<<"$leads" ||
    fail "leads_duplicate_of_fkey is not duplicate_of_lead_id -> leads(id) ON DELETE RESTRICT"
for table in sources offers; do
    output_of "\\d+ $table" | grep -qF "Table \"public.$table\"" || fail "\\d+ $table does not describe public.$table"
done

# -- the same container as the tasks' -----------------------------------------------------------
log "the tasks' Docker backend on the sequence's container"
read -r -a invoke <<<"${LEADDB_CI_INVOKE:-.nox/verify/bin/invoke}"
container="$(docker compose ps -q postgres)"
[[ -n "$container" ]] || fail "docker compose ps shows no postgres container after the block"
name="$(docker inspect --format '{{.Name}}' "$container")"
[[ "$name" == "/$project-postgres-1" ]] || fail "the container is $name, not $project-postgres-1"
log "another service on the project network reaches it as postgres:5432"
network="$(docker inspect --format '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$container")"
[[ "$network" == "${project}_default " ]] || fail "the container is on the network(s) $network, not ${project}_default"
image="$(docker inspect --format '{{.Config.Image}}' "$container")"
if ! docker run --rm --network "${project}_default" --entrypoint pg_isready --label org.leaddb.acceptance=1 \
    "$image" -h postgres -p 5432 -t 30; then
    fail "a container on ${project}_default does not reach postgres:5432 (a host firewall dropping the bridge's traffic?)"
fi
"${invoke[@]}" db.introspect --backend docker || fail "invoke db.introspect --backend docker failed on it"
down="$("${invoke[@]}" db.down --backend docker)" || fail "invoke db.down --backend docker failed"
printf '%s\n' "$down"
[[ "$down" == *"container $project-postgres-1"* && "$down" == *"volume ${project}_pgdata"* ]] ||
    fail "db.down did not remove container $project-postgres-1 and volume ${project}_pgdata"
[[ -z "$(docker ps -aq --filter "id=$container")" ]] || fail "container $name is still there after db.down"
docker compose down -v >/dev/null 2>&1 || true # anything the tasks left (nothing, normally)
log "acceptance sequence: ok"
