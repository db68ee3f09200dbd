#!/usr/bin/env bash
# The bash floor for a fresh local cluster (benchmarks/peers.py times it against
# `invoke db.reset --backend local`): initdb with the local backend's arguments, the same
# server settings appended to postgresql.conf, `pg_ctl -w start`, createdb, then
# `psql -f` per file. Run as the server user; every binary from `pg_config --bindir`.
#
#   fresh-cluster-floor.sh BINDIR DATADIR PORT SOCKETDIR DBNAME FILE...
#
# DATADIR.pw holds the superuser password, DATADIR.conf the settings; the log goes to
# DATADIR.log. DATADIR must not exist yet.
set -eu
bindir=$1; data=$2; port=$3; sock=$4; db=$5; shift 5
"$bindir/initdb" -D "$data" -U postgres -E UTF8 --locale=C --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$data.pw" --no-sync --no-instructions >/dev/null
cat "$data.conf" >> "$data/postgresql.conf"
printf "port = %s\nunix_socket_directories = '%s'\n" "$port" "$sock" >> "$data/postgresql.conf"
"$bindir/pg_ctl" -D "$data" -l "$data.log" -w start >/dev/null
"$bindir/createdb" -h "$sock" -p "$port" -U postgres "$db"
for f in "$@"; do
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d "$db" -f "$f"
done
