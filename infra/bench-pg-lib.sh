# Postgres helpers shared by the benchmark scripts (sourced after
# bench-lib.sh, with $work set): a cluster archiving into a Lifeboat
# repository and a pgBackRest stanza at once (one archive_command), both
# with zstd level 1, encryption and 2 processes.

# pg_bench_cleanup: every cluster under $work stopped, $work removed.
pg_bench_cleanup() {
  for d in "$work"/*/; do bash infra/pg-cluster.sh stop "$d" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}

# pg_bench_setup: Postgres and pgBackRest installed; a clean $work with the
# agent ($agent), Lifeboat's repository ($lb_repo), pgBackRest's
# configuration and its wrapper ($pgbr, run as the cluster's owner); $bindir.
pg_bench_setup() {
  bash infra/services.sh install postgres >&2
  need pgbackrest pgbackrest
  bindir=$(pg_config --bindir)
  pg_bench_cleanup
  agent_for_postgres
  lb_repo="file://$work/lb-repo"
  RUST_LOG=warn "$agent" repo init --repo "$lb_repo" --key-file "$work/key" >/dev/null
  mkdir -p "$work/pgbr-repo" "$work/pgbr-log" "$work/pgbr-spool"
  cat >"$work/pgbackrest.conf" <<EOF2
[global]
repo1-path=$work/pgbr-repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=lifeboat-bench-not-a-secret
repo1-retention-full=9999999
compress-type=zst
compress-level=1
process-max=2
log-path=$work/pgbr-log
spool-path=$work/pgbr-spool
lock-path=$work/pgbr-spool
log-level-console=warn
log-level-file=off
start-fast=y
archive-async=n

[bench]
pg1-path=PGDATA
pg1-port=PGPORT
pg1-host-user=postgres
pg1-socket-path=SOCKET
EOF2
  # pgBackRest runs as the cluster's owner, as it must.
  printf '#!/bin/sh\nexec runuser -u postgres -- pgbackrest --config=%s/pgbackrest.conf --stanza=bench "$@"\n' "$work" >"$work/bin/pgbr"
  chmod 755 "$work/bin/pgbr"
  pgbr="$work/bin/pgbr"
  chown -R postgres:postgres "$work"
}

# cluster NAME SCALE: a cluster archiving into both repositories, pgbench-initialised.
cluster() {
  local name=$1 s=$2 port dir
  dir="$work/$name"
  port=$(bash infra/pg-cluster.sh free-port)
  bash infra/pg-cluster.sh create "$dir" "$port" \
    "archive_mode = on" \
    "archive_command = '$agent wal-push %p --repo $lb_repo --cell bench --key-file $work/key && pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p'" \
    "max_wal_size = 4GB" "checkpoint_timeout = 30min" >/dev/null
  sed -i "s|PGDATA|$dir/data|; s|PGPORT|$port|; s|SOCKET|$dir/socket|" "$work/pgbackrest.conf"
  bash infra/pg-cluster.sh start "$dir" >&2
  "$pgbr" stanza-create >&2
  log "== pgbench -i -s $s"
  "$bindir/pgbench" -i -q -s "$s" -h 127.0.0.1 -p "$port" -U postgres postgres 2>/dev/null
  "$bindir/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -c checkpoint postgres
  echo "$port"
}
psql_at() { "$bindir/psql" -qAtX -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
# switch_wait PORT: switch WAL and wait until archived (both archives: one
# command). Not by last_archived_wal alone: that can be an older segment's
# .backup file, archived after its successor.
switch_wait() {
  local seg
  seg=$(psql_at "$1" "select pg_walfile_name(pg_switch_wal())")
  until [[ $(psql_at "$1" "select exists(select from pg_ls_archive_statusdir() where name = '$seg.done') or left(last_archived_wal, 24) > '$seg' from pg_stat_archiver") == t ]]; do sleep 0.5; done
}
# restore_and_replay NAME PORT CMD...: run CMD (a restore into $work/NAME/data), start, wait for promotion.
restore_and_replay() {
  local name=$1 port=$2
  shift 2
  "$@" >/dev/null
  start_and_promote "$name" "$port"
}
# start_and_promote NAME PORT: start the restored cluster $work/NAME and wait
# until it has replayed its WAL and promoted (accepts writes).
start_and_promote() {
  local i
  # (pg_ctl may give up waiting while a long recovery goes on: the poll decides.)
  bash infra/pg-cluster.sh start "$work/$1" "$2" >/dev/null 2>&1 || true
  for ((i = 0; i < 18000; i++)); do # an hour
    [[ $(psql_at "$2" "select pg_is_in_recovery()" 2>/dev/null) == f ]] && return 0
    sleep 0.2
  done
  lb_die "the restored cluster $work/$1 did not promote within an hour"
}

