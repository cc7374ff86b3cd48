#!/usr/bin/env bash
# Private PostgreSQL 15 clusters for tests (DESIGN.md, "Real components,
# locally"). The server refuses to run as root, so as root every server
# command runs as the `postgres` system user (runuser) on folders it owns.
#
# Layout of a cluster folder DIR (owned by postgres):
#   DIR/data          PGDATA
#   DIR/socket        unix socket directory (kept out of PGDATA, so a backup
#                     of PGDATA never carries socket lock files)
#   DIR/postgres.log  server log
# Started clusters are registered in <run dir>/pg-clusters ("PID DIR" lines)
# so that `infra/services.sh stop` can stop whatever tests left running.
set -euo pipefail

LB_TAG=pg-cluster
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY=$LB_RUN_DIR/pg-clusters

usage() {
  cat <<'EOF'
Usage: infra/pg-cluster.sh COMMAND ...

  create DIR PORT [CONF_LINE...]  initdb DIR/data (trust auth, 127.0.0.1 only,
                                  wal_level=replica, max_wal_senders=4, fsync=on),
                                  extra postgresql.conf lines appended; prints
                                  the PGDATA path
  start DIR [PORT]                start the cluster (PORT overrides the
                                  configured one, e.g. for a restored PGDATA);
                                  connect with psql -h 127.0.0.1 -p PORT -U postgres
  stop DIR                        fast shutdown (no-op when not running)
  stop-all                        stop every registered cluster
  free-port                       print a free TCP port on 127.0.0.1
EOF
}

# as_pg CMD...: run CMD as postgres when root (from / so it can chdir).
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg_bin() {
  local d
  d=$(lb_pg_bindir) || lb_die "PostgreSQL 15 not installed: run infra/services.sh install postgres"
  printf '%s/%s\n' "$d" "$1"
}

# abs_dir DIR: absolute path of DIR (created when missing).
abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# open_parents DIR: temp folders are often 0700 (mktemp -d, Rust's tempfile);
# give "others" search permission (x only, no listing) on such ancestors of
# DIR, but only below /tmp, /var/tmp or $TMPDIR, so postgres can reach DIR.
open_parents() {
  local p=$1 t
  while p=$(dirname "$p") && [[ $p != / ]]; do
    for t in /tmp /var/tmp "${TMPDIR:-/tmp}"; do
      t=${t%/}
      if [[ $p == "$t"/* ]] && ! as_pg test -x "$p"; then
        lb_log "chmod o+x $p (so user postgres can reach the cluster)"
        chmod o+x "$p"
      fi
    done
  done
}

# give_to_postgres DIR: make DIR and everything below it postgres's.
give_to_postgres() {
  [[ $EUID -eq 0 ]] || return 0
  chown -R postgres:postgres "$1"
  open_parents "$1"
  as_pg test -w "$1" ||
    lb_die "user postgres cannot reach $1 (a parent folder outside /tmp is closed to it, e.g. /root); use a folder under /tmp"
}

# registry_set DIR [PID]: drop DIR's line; with PID, add "PID DIR".
registry_set() {
  local dir=$1 pid=${2:-}
  mkdir -p "$LB_RUN_DIR"
  (
    flock 8
    touch "$REGISTRY"
    awk -v d="$dir" '{ i = index($0, " "); if (substr($0, i + 1) != d) print }' \
      "$REGISTRY" >"$REGISTRY.tmp"
    [[ -z $pid ]] || printf '%s %s\n' "$pid" "$dir" >>"$REGISTRY.tmp"
    mv "$REGISTRY.tmp" "$REGISTRY"
  ) 8>"$REGISTRY.lock"
}

is_running() { as_pg "$(pg_bin pg_ctl)" -D "$1/data" status >/dev/null 2>&1; }

cmd_create() {
  [[ $# -ge 2 ]] || lb_die "usage: create DIR PORT [CONF_LINE...]"
  local dir port=$2 line sock
  [[ $port =~ ^[0-9]+$ ]] || lb_die "PORT must be a number, got '$port'"
  dir=$(abs_dir "$1")
  shift 2
  [[ $dir != *"'"* ]] || lb_die "DIR must not contain a single quote"
  [[ ! -e $dir/data/PG_VERSION ]] || lb_die "$dir/data is already a cluster"
  # A unix socket path is limited to 107 bytes.
  sock="$dir/socket/.s.PGSQL.$port"
  ((${#sock} <= 107)) || lb_die "socket path too long (${#sock} > 107 bytes): $sock; use a shorter DIR"
  mkdir -p "$dir/data" "$dir/socket"
  give_to_postgres "$dir"
  chmod 700 "$dir/data"
  lb_log "initdb $dir/data"
  if ! as_pg "$(pg_bin initdb)" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C --no-instructions >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    lb_die "initdb failed for $dir/data"
  fi
  {
    echo
    echo "# ---- infra/pg-cluster.sh ----"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir/socket'"
    echo "wal_level = replica"
    echo "max_wal_senders = 4"
    echo "fsync = on"
    for line in "$@"; do printf '%s\n' "$line"; done
  } >>"$dir/data/postgresql.conf"
  cat >"$dir/data/pg_hba.conf" <<'EOF'
# infra/pg-cluster.sh: trust on the unix socket and 127.0.0.1 only.
local all         all               trust
host  all         all  127.0.0.1/32 trust
local replication all               trust
host  replication all  127.0.0.1/32 trust
EOF
  give_to_postgres "$dir"
  printf '%s\n' "$dir/data"
}

cmd_start() {
  [[ $# -ge 1 ]] || lb_die "usage: start DIR [PORT]"
  local dir opts pid
  dir=$(abs_dir "$1")
  [[ -f $dir/data/PG_VERSION ]] || lb_die "$dir/data is not a cluster (run create first)"
  if ! is_running "$dir"; then
    # Socket and listen address are forced here too, so a PGDATA restored
    # from another cluster's backup starts in this folder as well.
    opts="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir/socket"
    if [[ $# -ge 2 ]]; then
      [[ $2 =~ ^[0-9]+$ ]] || lb_die "PORT must be a number, got '$2'"
      opts+=" -p $2"
    fi
    mkdir -p "$dir/socket"
    give_to_postgres "$dir"
    chmod 700 "$dir/data"
    lb_log "starting $dir"
    if ! as_pg "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "$opts" start >&2; then
      tail -n 20 "$dir/postgres.log" >&2 || true
      lb_die "could not start $dir"
    fi
  else
    lb_log "$dir already running"
  fi
  pid=$(head -n1 "$dir/data/postmaster.pid")
  registry_set "$dir" "$pid"
}

cmd_stop() {
  [[ $# -eq 1 ]] || lb_die "usage: stop DIR"
  local dir
  [[ -d $1 ]] || {
    registry_set "$1"
    return 0
  }
  dir=$(abs_dir "$1")
  if [[ -f $dir/data/PG_VERSION ]] && is_running "$dir"; then
    lb_log "stopping $dir"
    as_pg "$(pg_bin pg_ctl)" -D "$dir/data" -m fast -w -t 60 stop >&2
  fi
  registry_set "$dir"
}

# Stop every registered cluster; a cluster whose folder was already deleted is
# shut down through its recorded postmaster pid (SIGINT = fast shutdown).
cmd_stop_all() {
  local pid dir
  [[ -s $REGISTRY ]] || return 0
  while read -r pid dir; do
    [[ -n $dir ]] || continue
    if [[ -f $dir/data/PG_VERSION ]]; then
      cmd_stop "$dir"
      continue
    fi
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
      grep -q postgres "/proc/$pid/comm" 2>/dev/null; then
      lb_log "stopping orphaned postmaster $pid ($dir is gone)"
      kill -INT "$pid" 2>/dev/null || true
      for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    registry_set "$dir"
  done < <(cat "$REGISTRY")
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    create) cmd_create "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    stop-all) cmd_stop_all ;;
    free-port) lb_free_ports 1 ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
