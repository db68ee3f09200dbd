#!/usr/bin/env bash
# Entrypoint of the local PostgreSQL 15 test image (leaddb/postgres:15-local).
#
# Our own implementation of the official postgres image's documented contract, so the
# tests exercise what users get from `postgres:15`:
#   - POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_INITDB_ARGS,
#     POSTGRES_HOST_AUTH_METHOD and PGDATA, each also as VAR_FILE (read from a file);
#   - initialise only when $PGDATA/PG_VERSION is absent;
#   - initdb, then a temporary server on the unix socket only (listen_addresses=''),
#     CREATE DATABASE $POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sql, *.sql.gz and
#     *.sh in sorted order, SQL through `psql -v ON_ERROR_STOP=1 --no-psqlrc`; the first
#     failure exits non-zero and leaves the volume half-initialised, as upstream does;
#   - `host all all all scram-sha-256` (or POSTGRES_HOST_AUTH_METHOD) in pg_hba.conf;
#   - exec postgres as the postgres user, listening on '*' unless the command says otherwise.
# One addition: a VAR_FILE whose value would end in \r or start with a byte-order mark (a file
# saved on Windows) is refused with a message instead of becoming part of the value.
# Not implemented: POSTGRES_INITDB_WALDIR, *.sql.xz/*.sql.zst, nss_wrapper for arbitrary uids.
set -Eeo pipefail

# VAR_FILE: the value comes from the named file (Docker secrets); both set is an error.
file_env() {
	local var="$1" default="${2:-}"
	local file_var="${var}_FILE"
	if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
		exit 1
	fi
	local value="$default"
	if [[ -n "${!var:-}" ]]; then
		value="${!var}"
	elif [[ -n "${!file_var:-}" ]]; then
		value="$(<"${!file_var}")"
		refuse_windows_text "$file_var" "${!file_var}" "$value"
	fi
	export "$var"="$value"
	unset "$file_var"
}

# Not upstream: a VAR_FILE saved on Windows (PowerShell's Set-Content, Notepad) ends in CRLF;
# $(< file) drops only the \n, so the value would end in \r (a password nobody can type, a
# role named "bob\r"). A UTF-8 byte-order mark would likewise become its first character.
refuse_windows_text() {
	local file_var="$1" file="$2" value="$3" what=""
	if [[ "$value" == *$'\r' ]]; then
		what="ends in a carriage return (a CRLF line ending)"
	elif [[ "$value" == $'\xef\xbb\xbf'* ]]; then
		what="starts with a UTF-8 byte-order mark"
	fi
	if [[ -n "$what" ]]; then
		printf >&2 'error: %s (%s) %s, which would become part of the value\n' "$file_var" "$file" "$what"
		printf >&2 '       write it as UTF-8 without a byte-order mark or a line ending: in PowerShell 7\n'
		printf >&2 "       Set-Content -NoNewline -Path <file> -Value '<secret>'; in a POSIX shell\n"
		printf >&2 "       printf '%%s' '<secret>' > <file>\n"
		exit 1
	fi
}

# Drop root: setpriv and runuser both come with util-linux, which a minbase rootfs has.
as_postgres() {
	if command -v setpriv >/dev/null 2>&1; then
		exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
	fi
	exec runuser -u postgres -- "$@"
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	file_env POSTGRES_HOST_AUTH_METHOD
	file_env PGDATA /var/lib/postgresql/data
	DATABASE_ALREADY_EXISTS=
	if [[ -s "$PGDATA/PG_VERSION" ]]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_directories() {
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" 2>/dev/null || :
	mkdir -p /var/run/postgresql
	chmod 03775 /var/run/postgresql 2>/dev/null || :
	if [[ "$(id -u)" == 0 ]]; then
		find "$PGDATA" \! -user postgres -exec chown postgres: '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres: '{}' +
	fi
}

verify_password_is_set() {
	if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
		cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOM
		exit 1
	fi
}

init_database_directory() {
	# the password reaches initdb through a pipe, never the command line
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
}

setup_hba_conf() {
	local method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	{
		printf '\n'
		if [[ "$method" == trust ]]; then
			printf '# warning: trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$method"
	} >>"$PGDATA/pg_hba.conf"
}

process_sql() {
	local args=(-v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password)
	if [[ -n "$POSTGRES_DB" ]]; then
		args+=(--dbname "$POSTGRES_DB")
	fi
	PGHOST= PGHOSTADDR= psql "${args[@]}" "$@"
}

temp_server_start() {
	# socket only: nothing outside the container can connect while the init files run
	if [[ "${1:-}" == postgres ]]; then
		shift
	fi
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

setup_db() {
	local exists
	exists="$(POSTGRES_DB= process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db';
	EOSQL
	)"
	if [[ -z "${exists//[[:space:]]/}" ]]; then
		POSTGRES_DB= process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db";
		EOSQL
		printf '\n'
	fi
}

process_init_files() {
	local f
	printf '\n'
	for f in "$@"; do
		case "$f" in
			*.sh)
				if [[ -x "$f" ]]; then
					printf '%s: running %s\n' "$0" "$f"
					"$f"
				else
					printf '%s: sourcing %s\n' "$0" "$f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)
				printf '%s: running %s\n' "$0" "$f"
				process_sql -f "$f"
				printf '\n'
				;;
			*.sql.gz)
				printf '%s: running %s\n' "$0" "$f"
				gunzip -c "$f" | process_sql
				printf '\n'
				;;
			*) printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
		printf '\n'
	done
}

main() {
	if [[ "${1:0:1}" == '-' ]]; then
		set -- postgres "$@"
	fi
	if [[ "$1" != postgres ]] || has_help_flag "$@"; then
		exec "$@"
	fi

	setup_env
	create_directories
	if [[ "$(id -u)" == 0 ]]; then
		as_postgres "$BASH_SOURCE" "$@"
	fi

	if [[ -z "$DATABASE_ALREADY_EXISTS" ]]; then
		verify_password_is_set
		init_database_directory
		setup_hba_conf
		export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
		temp_server_start "$@"
		setup_db
		shopt -s nullglob
		process_init_files /docker-entrypoint-initdb.d/*
		shopt -u nullglob
		temp_server_stop
		unset PGPASSWORD
		printf '\nPostgreSQL init process complete; ready for start up.\n\n'
	else
		printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
	fi
	exec "$@"
}

has_help_flag() {
	local arg
	for arg; do
		case "$arg" in
			-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

main "$@"
