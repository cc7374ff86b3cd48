#!/usr/bin/env bash
# Postgres benchmark (issue 3): Lifeboat against pgBackRest on the same
# cluster, disk and run; both with zstd level 1, encryption and 2 processes.
# Prints ratios; asserts nothing about wall time.
#   full backup of pgbench scale $SCALE                  (bar: Lifeboat / pgBackRest <= 1.0, goal 0.7)
#   second backup after ~2 % appended ledger rows         (bar: stored <= 10 % of the DB, time <= 0.3 of the full)
#   restore + replay of >= 1 GiB of WAL to promotion      (bar: Lifeboat / pgBackRest <= 1.0)
#   archive 500 ready segments, one archiver at a time   (bar: throughput >= 2x pgBackRest's sync archive-push; p99 latency)
#   peak RSS of backup and restore, at scale 10 and $SCALE (flat)
# Usage: bash infra/bench-postgres.sh   (LIFEBOAT_BENCH_PG_SCALE=100, LIFEBOAT_BENCH_SEGMENTS=500,
#        LIFEBOAT_BENCH_PG_ONLY=archive for the archiving comparison alone,
#        LIFEBOAT_BENCH_PG_ONLY=backup for LIFEBOAT_BENCH_RUNS=3 alternating rounds of
#        full and incremental backups against the floor of tar | zstd -1 | sha256sum, goal 0.45)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
scale="${LIFEBOAT_BENCH_PG_SCALE:-100}"
segments="${LIFEBOAT_BENCH_SEGMENTS:-500}"
only="${LIFEBOAT_BENCH_PG_ONLY:-}"
runs="${LIFEBOAT_BENCH_RUNS:-3}"
work=/var/tmp/lifeboat-bench-pg
# shellcheck source=infra/bench-lib.sh
source infra/bench-lib.sh

log "== building release binaries; installing pgbackrest"
cargo build --release --locked --bins 2>&1 | tail -1 >&2
need zstd zstd
# shellcheck source=infra/bench-pg-lib.sh
source infra/bench-pg-lib.sh
trap pg_bench_cleanup EXIT
pg_bench_setup

# fresh_repositories: both repositories emptied and made again (archiving
# idle first: the cluster keeps archiving into both).
fresh_repositories() {
  switch_wait "$port"
  rm -rf "$work/lb-repo" "$work/pgbr-repo"/*
  RUST_LOG=warn "$agent" repo init --repo "$lb_repo" --key-file "$work/key" >/dev/null
  chown -R postgres:postgres "$work/lb-repo" "$work/pgbr-repo"
  "$pgbr" stanza-create >&2
}

# backup_round I: one round of the backup comparison, the tools in turn
# (which goes first alternates by round): full backups into empty
# repositories and the floor, then 2 % more rows and incremental backups.
backup_round() {
  local i=$1 tools=(pgbr lb) first
  ((i % 2)) || tools=(lb pgbr)
  fresh_repositories
  for first in "${tools[@]}"; do
    sync
    case $first in
      pgbr) measure "pgbr_full_$i" "$pgbr" backup --type=full ;;
      lb) measure "lb_full_$i" "$agent" pg backup --repo "$lb_repo" --cell bench --conn "$conn" --key-file "$work/key" --output json ;;
    esac
  done
  sync
  # The floor: the same files read, compressed by zstd -1 on 2 threads and
  # hashed once, nothing stored (pg_wal left out, as both tools do).
  measure "floor_full_$i" bash -c "tar -C '$work/main/data' --exclude=./pg_wal --warning=no-file-changed -cf - . | zstd -1 -T2 -q | sha256sum"
  psql_at "$port" "insert into pgbench_accounts select aid, 1, 0, '' from generate_series($((next_aid + 1)), $((next_aid + rows))) aid" >/dev/null
  next_aid=$((next_aid + rows))
  psql_at "$port" "checkpoint" >/dev/null
  for first in "${tools[@]}"; do
    sync
    case $first in
      pgbr) measure "pgbr_incr_$i" "$pgbr" backup --type=incr ;;
      lb) measure "lb_incr_$i" "$agent" pg backup --repo "$lb_repo" --cell bench --conn "$conn" --key-file "$work/key" --kind incremental --output json ;;
    esac
  done
  log "   round $i: full $(ratio "$(eval echo "\$lb_full_${i}_s")" "$(eval echo "\$pgbr_full_${i}_s")") of pgBackRest's (floor $(ratio "$(eval echo "\$floor_full_${i}_s")" "$(eval echo "\$pgbr_full_${i}_s")")), incremental $(ratio "$(eval echo "\$lb_incr_${i}_s")" "$(eval echo "\$lb_full_${i}_s")") of its full"
}

if [[ $only == backup ]]; then
  port=$(cluster main "$scale")
  conn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
  db_bytes=$(psql_at "$port" "select pg_database_size('postgres')")
  rows=$((scale * 100000 / 50)) next_aid=$((scale * 100000))
  export RUST_LOG=warn
  log "== $runs rounds of full and incremental backups (database $((db_bytes >> 20)) MiB)"
  for ((round = 1; round <= runs; round++)); do backup_round "$round"; done
  for name in lb_full pgbr_full floor_full lb_incr pgbr_incr; do round_medians "$name"; done
  cat <<EOF2

Full and incremental backups, Lifeboat vs pgBackRest $(pgbackrest version | cut -d' ' -f2) ($(date -u +%FT%TZ), $(nproc) cores, pgbench scale $scale: $((db_bytes >> 20)) MiB; zstd level 1, encrypted, 2 processes; medians of $runs alternating rounds)
| measure | Lifeboat | pgBackRest | ratio | goal |
|---|---|---|---|---|
| full backup into an empty repository | ${lb_full_s} s | ${pgbr_full_s} s | $(ratio "$lb_full_s" "$pgbr_full_s") | <= 0.45 |
| floor: tar \| zstd -1 -T2 \| sha256sum | ${floor_full_s} s | | $(ratio "$floor_full_s" "$pgbr_full_s") | |
| incremental after +2 % rows: time (/ own full) | ${lb_incr_s} s ($(ratio "$lb_incr_s" "$lb_full_s")) | ${pgbr_incr_s} s ($(ratio "$pgbr_incr_s" "$pgbr_full_s")) | $(ratio "$lb_incr_s" "$pgbr_incr_s") | <= 0.2 of its full |
| CPU seconds, full (floor) | ${lb_full_cpu} | ${pgbr_full_cpu} | (${floor_full_cpu}) | |
| CPU seconds, incremental | ${lb_incr_cpu} | ${pgbr_incr_cpu} | | |
| peak RSS, full / incremental | $((lb_full_kb / 1024)) / $((lb_incr_kb / 1024)) MiB | $((pgbr_full_kb / 1024)) / $((pgbr_incr_kb / 1024)) MiB (runuser wrapper) | | |
EOF2
  exit 0
fi

if [[ $only == archive ]]; then
  port=$(cluster main 10)
  log "== WAL for the archiving comparison"
  psql_at "$port" "update pgbench_accounts set abalance = abalance + 1" >/dev/null
  psql_at "$port" "update pgbench_accounts set abalance = abalance + 1" >/dev/null
  switch_wait "$port"
  bash infra/pg-cluster.sh stop "$work/main" >&2
fi

# ---------------------------------------------------------------- scale 10
[[ $only == archive ]] || {
log "== memory at scale 10"
port=$(cluster small 10)
conn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
export RUST_LOG=warn
measure lb_full_small "$agent" pg backup --repo "$lb_repo" --cell bench --conn "$conn" --key-file "$work/key" --output json
measure lb_restore_small "$agent" pg restore --repo "$lb_repo" --cell bench --key-file "$work/key" --to "$work/small-r/data" --latest --no-archive
bash infra/pg-cluster.sh stop "$work/small" >&2
rm -rf "$work/small" "$work/small-r" "$work/lb-repo" "$work/pgbr-repo"/*
RUST_LOG=warn "$agent" repo init --repo "$lb_repo" --key-file "$work/key" >/dev/null
chown -R postgres:postgres "$work"
sed -i "s|^pg1-path=.*|pg1-path=PGDATA|; s|^pg1-port=.*|pg1-port=PGPORT|; s|^pg1-socket-path=.*|pg1-socket-path=SOCKET|" "$work/pgbackrest.conf"

# ---------------------------------------------------------------- scale N
port=$(cluster main "$scale")
conn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
db_bytes=$(psql_at "$port" "select pg_database_size('postgres')")
log "== full backups (database $((db_bytes >> 20)) MiB)"
sync
measure pgbr_full "$pgbr" backup --type=full
sync
measure lb_full "$agent" pg backup --repo "$lb_repo" --cell bench --conn "$conn" --key-file "$work/key" --output json

log "== second backups after appending 2 % ledger rows"
rows=$((scale * 100000 / 50))
psql_at "$port" "insert into pgbench_accounts select aid, 1, 0, '' from generate_series($((scale * 100000 + 1)), $((scale * 100000 + rows))) aid" >/dev/null
psql_at "$port" "checkpoint" >/dev/null
sync
measure pgbr_incr "$pgbr" backup --type=incr
sync
measure lb_incr "$agent" pg backup --repo "$lb_repo" --cell bench --conn "$conn" --key-file "$work/key" --kind incremental --output json
lb_incr_stored=$(jget "$work/lb_incr.out" '["totals"]["new_stored_bytes"]')

log "== >= 1 GiB of WAL after the backups"
wal_start=$(psql_at "$port" "select pg_current_wal_lsn()")
psql_at "$port" "update pgbench_accounts set abalance = abalance + 1" >/dev/null
psql_at "$port" "update pgbench_accounts set abalance = abalance + 1 where aid % 2 = 0" >/dev/null
wal_bytes=$(psql_at "$port" "select pg_current_wal_lsn() - '$wal_start'::pg_lsn")
switch_wait "$port"
expected=$(psql_at "$port" "select sum(abalance) from pgbench_accounts")
log "   $((wal_bytes >> 20)) MiB of WAL"

log "== restore + replay to the end of the WAL"
bash infra/pg-cluster.sh stop "$work/main" >&2
rport=$(bash infra/pg-cluster.sh free-port)
mkdir -p "$work/pgbr-r/data" && chmod 700 "$work/pgbr-r/data" && chown -R postgres:postgres "$work/pgbr-r"
sync
timed pgbr_restore restore_and_replay pgbr-r "$rport" "$pgbr" restore --pg1-path="$work/pgbr-r/data" --archive-mode=off
got_pgbr=$(psql_at "$rport" "select sum(abalance) from pgbench_accounts")
bash infra/pg-cluster.sh stop "$work/pgbr-r" >&2
rm -rf "$work/pgbr-r"
rport=$(bash infra/pg-cluster.sh free-port)
sync
timed lb_restore restore_and_replay lb-r "$rport" /usr/bin/time -o "$work/lb_restore.rss" -f '%M' "$agent" pg restore --repo "$lb_repo" --cell bench --key-file "$work/key" --to "$work/lb-r/data" --latest --no-archive --agent-path "$agent"
got_lb=$(psql_at "$rport" "select sum(abalance) from pgbench_accounts")
lb_restore_kb=$(tail -1 "$work/lb_restore.rss")
bash infra/pg-cluster.sh stop "$work/lb-r" >&2
rm -rf "$work/lb-r"
[[ $got_lb == "$expected" && $got_pgbr == "$expected" ]] || { log "restored balances differ: lifeboat $got_lb pgbackrest $got_pgbr expected $expected"; exit 1; }
}

log "== archiving a backlog of $segments ready segments"
# Real WAL segments of this cluster, copied under new names into a pg_wal
# with .ready files, pushed one at a time in order as Postgres' archiver does.
mapfile -t real < <(ls "$work/main/data/pg_wal" | grep -E '^[0-9A-F]{24}$' | head -50)
archive_run() { # archive_run NAME CMD-PREFIX...: per-segment latencies into $work/NAME.lat
  local name=$1 wal i seg t0 t1
  shift
  wal="$work/$name-wal/pg_wal"
  mkdir -p "$wal/archive_status" "$work/$name-wal/global"
  # pgBackRest reads the cluster's identity from pg_control under pg1-path.
  cp "$work/main/data/global/pg_control" "$work/$name-wal/global/"
  for ((i = 0; i < segments; i++)); do
    seg=$(printf '00000009%08X%08X' $(((i + 4096) / 256)) $(((i + 4096) % 256)))
    cp "$work/main/data/pg_wal/${real[$((i % ${#real[@]}))]}" "$wal/$seg"
    touch "$wal/archive_status/$seg.ready"
  done
  chown -R postgres:postgres "$work/$name-wal"
  : >"$work/$name.lat"
  local start
  start=$(date +%s.%N)
  for ((i = 0; i < segments; i++)); do
    seg=$(printf '00000009%08X%08X' $(((i + 4096) / 256)) $(((i + 4096) % 256)))
    t0=$(date +%s.%N)
    (cd "$work/$name-wal" && runuser -u postgres -- "$@" "pg_wal/$seg") >/dev/null
    t1=$(date +%s.%N)
    mv "$wal/archive_status/$seg.ready" "$wal/archive_status/$seg.done"
    echo "$t1 - $t0" | bc >>"$work/$name.lat"
  done
  printf -v "${name}_s" '%s' "$(echo "$(date +%s.%N) - $start" | bc)"
  rm -rf "$work/$name-wal"
}
p99() { sort -n "$1" | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", a[i]}'; }
archive_run pgbr_push pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --pg1-path="$work/pgbr_push-wal" archive-push
archive_run lb_push "$agent" wal-push --repo "$lb_repo" --cell push-bench --key-file "$work/key" ${LIFEBOAT_BENCH_WAL_PARALLEL:+--parallel "$LIFEBOAT_BENCH_WAL_PARALLEL"}
log "$(printf 'pgbackrest push %8.2f s, lifeboat push %8.2f s' "$pgbr_push_s" "$lb_push_s")"
if [[ $only == archive ]]; then
  printf '\n| archive %s ready segments (throughput ratio) | %s s | %s s | %s x | >= 2x |\n| archive: p99 latency per segment | %s s | %s s | | |\n' \
    "$segments" "$lb_push_s" "$pgbr_push_s" "$(ratio "$pgbr_push_s" "$lb_push_s")" "$(p99 "$work/lb_push.lat")" "$(p99 "$work/pgbr_push.lat")"
  exit 0
fi

cat <<EOF2

Lifeboat vs pgBackRest $(pgbackrest version | cut -d' ' -f2) ($(date -u +%FT%TZ), $(nproc) cores, pgbench scale $scale: $((db_bytes >> 20)) MiB; zstd level 1, encrypted, 2 processes)
| measure | Lifeboat | pgBackRest | ratio | bar |
|---|---|---|---|---|
| full backup | ${lb_full_s} s | ${pgbr_full_s} s | $(ratio "$lb_full_s" "$pgbr_full_s") | <= 1.0 (goal 0.7) |
| second backup after +2 % rows: time / own full | ${lb_incr_s} s ($(ratio "$lb_incr_s" "$lb_full_s")) | ${pgbr_incr_s} s ($(ratio "$pgbr_incr_s" "$pgbr_full_s")) | | <= 0.3 |
| second backup: bytes stored / database | $((lb_incr_stored >> 20)) MiB ($(pct "$lb_incr_stored" "$db_bytes") %) | | | <= 10 % |
| restore + replay of $((wal_bytes >> 20)) MiB WAL to promotion | ${lb_restore_s} s | ${pgbr_restore_s} s | $(ratio "$lb_restore_s" "$pgbr_restore_s") | <= 1.0 |
| archive $segments ready segments (throughput ratio) | ${lb_push_s} s | ${pgbr_push_s} s | $(ratio "$pgbr_push_s" "$lb_push_s") x | >= 2x |
| archive: p99 latency per segment | $(p99 "$work/lb_push.lat") s | $(p99 "$work/pgbr_push.lat") s | | |
| peak RSS, backup: scale 10 / $scale | $((lb_full_small_kb / 1024)) / $((lb_full_kb / 1024)) MiB | $((pgbr_full_kb / 1024)) MiB (at $scale; runuser wrapper) | | flat |
| peak RSS, restore: scale 10 / $scale | $((lb_restore_small_kb / 1024)) / $((lb_restore_kb / 1024)) MiB | | | flat |
EOF2
