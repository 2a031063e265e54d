#!/usr/bin/env bash
# Starts a PostgreSQL formation with automatic failover on loopback, for
# tests: a pg_auto_failover monitor and two data nodes (a primary and a
# synchronous secondary), and prints the multi-host DSN the cloud uses.
#
#   - installs Debian's postgresql-15-auto-failover and pg-auto-failover-cli
#     with apt-get when pg_autoctl is absent (as root);
#   - everything lives under $VEND_PGAF_DIR (default /var/tmp/vend-pgaf):
#     monitor/, node1/, node2/ (data directories), *.log, *.pid, pgaf.env
#     (the ports, picked free on 127.0.0.1 the first time) and xdg/ (the
#     pg_autoctl configuration and state);
#   - as root, PostgreSQL and pg_autoctl run as the postgres user;
#   - the monitor's health checks are tightened (1 s period, a node is
#     unhealthy after 2 s, an unreachable primary is taken as demoted after
#     5 s instead of 30 s) so that a failover takes seconds, not the
#     default half minute (the README says what production keeps);
#   - waits until the monitor reports one primary and one secondary, then
#     makes sure a login role "vend" (password "vend", CREATEDB) owns the
#     database "vend";
#   - idempotent: a running formation is reused; a stopped node (a test
#     killed it) is started again and rejoins as a secondary.
#
# Local test use only: connections from 127.0.0.1 are trusted and not
# encrypted. The README's fleet section describes a production set-up.
#
# The last line on stdout is VEND_PGAF_DSN=<dsn>, so a caller can do:
#   export "$(scripts/pgaf.sh | tail -n1)"
set -euo pipefail

log() { printf 'pgaf.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

DIR=${VEND_PGAF_DIR:-/var/tmp/vend-pgaf}
PGBIN=/usr/lib/postgresql/15/bin
WAIT=${VEND_PGAF_WAIT:-180} # seconds to wait for a primary and a secondary

if ! command -v pg_autoctl >/dev/null 2>&1 || [ ! -x "$PGBIN/pg_ctl" ]; then
	[ "$(id -u)" -eq 0 ] || die "pg_autoctl is not installed and this is not root: run this script as root once, or install postgresql-15-auto-failover and pg-auto-failover-cli"
	command -v apt-get >/dev/null 2>&1 || die "pg_autoctl is not installed and apt-get is not available"
	log "installing postgresql-15-auto-failover and pg-auto-failover-cli"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends postgresql-15-auto-failover pg-auto-failover-cli >&2 ||
		{ apt-get update >&2 && apt-get install -y --no-install-recommends postgresql-15-auto-failover pg-auto-failover-cli >&2; } ||
		die "apt-get could not install pg_auto_failover"
fi

# as USER CMD...: run as the postgres user when root, else as ourselves.
RUNAS=()
OWNER=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
	RUNAS=(setpriv --reuid=postgres --regid=postgres --init-groups --)
	OWNER=postgres
fi
export XDG_CONFIG_HOME=$DIR/xdg/config XDG_DATA_HOME=$DIR/xdg/data XDG_RUNTIME_DIR=$DIR/xdg/run
export PG_CONFIG=$PGBIN/pg_config PATH=$PGBIN:$PATH
as_pg() { (cd "$DIR" && env HOME="$DIR" "${RUNAS[@]}" "$@"); }

mkdir -p "$DIR" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
chown -R "$OWNER" "$DIR" 2>/dev/null || true

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 30000))
		port_free "$p" && ! grep -qw "$p" "$DIR/pgaf.env" 2>/dev/null && { echo "$p"; return; }
	done
	die "no free loopback port found"
}
if [ ! -f "$DIR/pgaf.env" ]; then
	{
		echo "MONITOR_PORT=$(pick_port)"
	} >"$DIR/pgaf.env"
	echo "NODE1_PORT=$(pick_port)" >>"$DIR/pgaf.env"
	echo "NODE2_PORT=$(pick_port)" >>"$DIR/pgaf.env"
fi
# shellcheck source=/dev/null
. "$DIR/pgaf.env"
MONITOR_URI="postgres://autoctl_node@127.0.0.1:$MONITOR_PORT/pg_auto_failover?sslmode=disable"

# alive NAME: its keeper runs (a zombie, killed but not yet reaped, does
# not). The keeper's own pid file (pg_autoctl's, under XDG_RUNTIME_DIR)
# counts too, and then becomes NAME.pid: a keeper this script did not
# record must not be started twice, and a test must be able to kill it.
alive() {
	local st p
	p=$(head -n1 "$XDG_RUNTIME_DIR/pg_autoctl$DIR/$1/pg_autoctl.pid" 2>/dev/null) || p=
	if [ -n "$p" ] && st=$(ps -o stat= -p "$p" 2>/dev/null) && [[ $st != Z* ]] &&
		[[ "$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)" == *"--pgdata $DIR/$1"* ]]; then
		echo "$p" >"$DIR/$1.pid"
		return 0
	fi
	[ -f "$DIR/$1.pid" ] && st=$(ps -o stat= -p "$(cat "$DIR/$1.pid")" 2>/dev/null) && [[ $st != Z* ]]
}
configured() { [ -f "$XDG_CONFIG_HOME/pg_autoctl$DIR/$1/pg_autoctl.cfg" ]; }

# service NAME ARGS...: start "pg_autoctl ARGS" for NAME in its own session
# (so that a test can kill the keeper and everything it started at once),
# unless it is already running.
service() {
	local name=$1
	shift
	alive "$name" && return 0
	log "starting $name: pg_autoctl $*"
	# env, setpriv and setsid each exec the next: $! is the keeper's pid,
	# its process group and its session.
	env -C "$DIR" HOME="$DIR" "${RUNAS[@]}" setsid pg_autoctl "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
	echo $! >"$DIR/$name.pid"
}

psql_at() { # port db sql
	as_pg psql -X -h 127.0.0.1 -p "$1" -U postgres -d "$2" -Atqc "$3"
}

wait_for() { # what seconds cmd...
	local what=$1 n=$2
	shift 2
	for _ in $(seq $((n * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "timed out after ${n}s waiting for $what (logs in $DIR)"
}

if configured monitor; then
	service monitor run --pgdata "$DIR/monitor"
else
	service monitor create monitor --pgdata "$DIR/monitor" --pgport "$MONITOR_PORT" --hostname 127.0.0.1 \
		--listen 127.0.0.1 --auth trust --no-ssl --pgctl "$PGBIN/pg_ctl" --run
fi
wait_for "the monitor" 60 psql_at "$MONITOR_PORT" pg_auto_failover "select 1 from pgautofailover.node limit 0"
# Loopback only: a monitor made before --listen was given listened on
# every interface; pin it (the change takes effect at its next start).
if [ "$(psql_at "$MONITOR_PORT" pg_auto_failover "show listen_addresses")" != 127.0.0.1 ]; then
	psql_at "$MONITOR_PORT" pg_auto_failover "alter system set listen_addresses = '127.0.0.1'" >/dev/null
	die "the monitor in $DIR listened beyond loopback; fixed in its settings: remove $DIR (or restart the formation) and run again"
fi
tuned=$(psql_at "$MONITOR_PORT" pg_auto_failover "select setting from pg_settings where name = 'pgautofailover.primary_demote_timeout'")
if [ "$tuned" != 5000 ]; then
	for kv in health_check_period=1000 health_check_timeout=1000 health_check_max_retries=1 \
		health_check_retry_delay=500 node_considered_unhealthy_timeout=2000 startup_grace_period=2000 \
		primary_demote_timeout=5000; do
		psql_at "$MONITOR_PORT" pg_auto_failover "alter system set pgautofailover.${kv%%=*} = ${kv#*=}" >/dev/null
	done
	psql_at "$MONITOR_PORT" pg_auto_failover "select pg_reload_conf()" >/dev/null
fi

node() { # n
	local n=$1 port
	eval "port=\$NODE${n}_PORT"
	if configured "node$n"; then
		service "node$n" run --pgdata "$DIR/node$n"
	else
		service "node$n" create postgres --pgdata "$DIR/node$n" --pgport "$port" --hostname 127.0.0.1 \
			--listen 127.0.0.1 --name "node$n" --dbname vend --auth trust --no-ssl --pgctl "$PGBIN/pg_ctl" \
			--monitor "$MONITOR_URI" --run
	fi
}

states() { # "name:reported:goal" per node
	psql_at "$MONITOR_PORT" pg_auto_failover \
		"select string_agg(nodename||':'||reportedstate||':'||goalstate, ' ' order by nodename) from pgautofailover.node"
}
# The monitor's table is what its nodes last reported: after a reboot (the
# data directories survive in /var/tmp, the processes do not) it still says
# primary and secondary before either server is up again. So the formation
# counts as formed only when the primary it names accepts a connection and
# is writable, and the secondary answers and is in recovery.
formed() {
	local s p
	s=$(states)
	[[ " $s " == *":primary:primary "* && " $s " == *":secondary:secondary "* ]] || return 1
	p=$(node_port primary) && [ -n "$p" ] && [ "$(psql_at "$p" postgres "select pg_is_in_recovery()")" = f ] || return 1
	p=$(node_port secondary) && [ -n "$p" ] && [ "$(psql_at "$p" postgres "select pg_is_in_recovery()")" = t ]
}
node_port() { # reported state
	psql_at "$MONITOR_PORT" pg_auto_failover \
		"select nodeport from pgautofailover.node where reportedstate = '$1' and goalstate = '$1' limit 1"
}
has_primary() { [[ " $(states) " =~ :(single|primary|wait_primary):(single|primary|wait_primary)\  ]]; }

node 1
if ! configured node2; then
	wait_for "node1 as the first primary" 120 has_primary
fi
# A new secondary's pg_basebackup waits for a spread checkpoint on the
# primary (up to minutes on an idle server): ask for an immediate one
# while waiting, which the base backup's checkpoint then completes with.
formed_or_kick() {
	formed && return 0
	local p
	for p in "$NODE1_PORT" "$NODE2_PORT"; do
		psql_at "$p" postgres "checkpoint" >/dev/null 2>&1 || true
	done
	return 1
}
node 2
wait_for "a primary and a secondary" "$WAIT" formed_or_kick

vend_role() {
	local p
	p=$(node_port primary) && [ -n "$p" ] || return 1
	psql_at "$p" vend "do \$\$ begin
  if not exists (select from pg_roles where rolname = 'vend') then
    create role vend login createdb password 'vend';
  end if;
end \$\$; alter database vend owner to vend" >/dev/null
}
wait_for "the vend role on the primary" 30 vend_role

log "formation up: monitor :$MONITOR_PORT, $(states)"
echo "VEND_PGAF_DSN=postgres://vend:vend@127.0.0.1:$NODE1_PORT,127.0.0.1:$NODE2_PORT/vend?target_session_attrs=read-write&sslmode=disable"
