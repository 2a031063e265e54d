#!/usr/bin/env bash
# Makes PostgreSQL available for the test suites that run against a real
# database (cloud/store) and prints the DSN to use.
#
#   - a DSN in $VEND_PG_DSN that answers: use it as is;
#   - a Debian cluster (pg_lsclusters) that is down: start it;
#   - no server installed and running as root: apt-get update (once) and
#     apt-get install -y postgresql, then start the cluster it creates;
#   - as root, make sure a login role "vend" (password "vend", CREATEDB)
#     and a database "vend_test" exist, for local test use only; the cluster
#     listens on 127.0.0.1 (Debian's default listen_addresses = 'localhost')
#     with password (scram) authentication for host connections;
#   - otherwise: exit non-zero with a message saying what to do.
#
# It is idempotent and returns at once when the server already answers.
# The test suite creates its own scratch databases with the role's
# CREATEDB right and drops them when it is done.
#
# The last line on stdout is VEND_PG_DSN=<dsn>, so a caller can do:
#   export "$(scripts/pg.sh | tail -n1)"
set -euo pipefail

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

PG_USER=vend
PG_PASS=vend
PG_DB=vend_test

answers() { # dsn
	command -v psql >/dev/null 2>&1 || return 1
	PGCONNECT_TIMEOUT=3 psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

if [ -n "${VEND_PG_DSN:-}" ] && answers "$VEND_PG_DSN"; then
	echo "VEND_PG_DSN=$VEND_PG_DSN"
	exit 0
fi

# The first cluster pg_lsclusters lists: "version name port status ...".
cluster() { pg_lsclusters --no-header 2>/dev/null | awk 'NF>=4 {print $1, $2, $3, $4; exit}'; }

dsn_for() { printf 'postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable' "$PG_USER" "$PG_PASS" "$1" "$PG_DB"; }

# Fast path: the cluster is up and our role and database answer.
if command -v pg_lsclusters >/dev/null 2>&1; then
	read -r ver name port status <<<"$(cluster)" || true
	if [ "${status:-}" = online ] && answers "$(dsn_for "$port")"; then
		echo "VEND_PG_DSN=$(dsn_for "$port")"
		exit 0
	fi
fi

[ "$(id -u)" -eq 0 ] || die "PostgreSQL is not ready and this is not root: run this script as root once, \
or install it (sudo apt-get install -y postgresql) and set VEND_PG_DSN to a DSN whose role may CREATE DATABASE"

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(cluster)" ]; then
	if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is not available; set VEND_PG_DSN"
		export DEBIAN_FRONTEND=noninteractive
		log "installing postgresql with apt-get"
		apt-get update >&2 || die "apt-get update failed"
		apt-get install -y postgresql >&2 || die "apt-get install postgresql failed"
	fi
	if [ -z "$(cluster)" ]; then
		v=$(ls /usr/lib/postgresql | sort -n | tail -n1)
		log "creating cluster $v/main"
		pg_createcluster "$v" main >&2 || die "pg_createcluster $v main failed"
	fi
fi

read -r ver name port status <<<"$(cluster)"
[ -n "${ver:-}" ] || die "no PostgreSQL cluster found after install (pg_lsclusters is empty)"

if [ "$status" != online ]; then
	log "starting cluster $ver/$name on port $port"
	pg_ctlcluster "$ver" "$name" start >&2 || die "pg_ctlcluster $ver $name start failed; see /var/log/postgresql/postgresql-$ver-$name.log"
fi

for _ in $(seq 1 60); do
	pg_isready -q -h 127.0.0.1 -p "$port" && break
	sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || die "cluster $ver/$name does not accept connections on 127.0.0.1:$port"

as_postgres() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -Atq "$@"; }

if [ "$(as_postgres -c "select 1 from pg_roles where rolname = '$PG_USER'")" != 1 ]; then
	log "creating role $PG_USER"
	as_postgres -c "create role $PG_USER login createdb password '$PG_PASS'" >&2 || die "cannot create role $PG_USER"
fi
if [ "$(as_postgres -c "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]; then
	log "creating database $PG_DB"
	as_postgres -c "create database $PG_DB owner $PG_USER" >&2 || die "cannot create database $PG_DB"
fi

dsn=$(dsn_for "$port")
answers "$dsn" || die "cannot connect with $dsn: check pg_hba.conf allows password (scram-sha-256 or md5) for host 127.0.0.1"
echo "VEND_PG_DSN=$dsn"
