#!/usr/bin/env bash
# Time to recover a cell (issue 24, item 3): from "restore requested" to
# "accepting writes", for one cell whose Postgres (pgbench scale $SCALE, a
# full backup, then about $WAL_MIB MiB of WAL) and Kafka ($KAFKA_MIB MiB of
# 1 KiB records, 6 partitions) are both lost. Prints the phases of both
# sides and their ratio; asserts nothing about wall time.
# The target is an instant after the last record and the WAL load (a
# commit follows it), or with LIFEBOAT_BENCH_RECOVERY_TARGET=latest the
# end of the archived WAL.
#   Lifeboat: `lifeboat-agent drill run`: base restore, WAL replay through
#             its prefetching restore_command and promotion, then Kafka
#             restored up to the same instant (for "latest", up to
#             Postgres' last transaction).
#             Measured from the drill's start to its last restore step,
#             before its checks (which verify the balances and count the
#             records) and its cleanup.
#   baseline: what an operator would otherwise script, one after the other:
#             `pgbackrest restore` (to the same instant), start and wait
#             for promotion (its archive-get as restore_command), then
#             `kcat -P` of a dump of the topic into a new topic (created
#             beforehand, untimed).
# Goal (issue 24): Lifeboat <= 0.6 of the baseline. Both read their
# repositories from the same location: file:// on the same disk, or with
# LIFEBOAT_BENCH_RECOVERY_LOCATION=s3 or azure one bucket of a moto or
# container of an Azurite this script starts over HTTPS (see
# pg_bench_location); the baseline's Kafka dump stays a local file either
# way. Alternating rounds, medians.
# Usage: bash infra/bench-recovery.sh   (LIFEBOAT_BENCH_RECOVERY_SCALE=100,
#        LIFEBOAT_BENCH_RECOVERY_WAL_MIB=1024, LIFEBOAT_BENCH_RECOVERY_KAFKA_MIB=2048,
#        LIFEBOAT_BENCH_RECOVERY_TARGET=time, LIFEBOAT_BENCH_RECOVERY_LOCATION=file,
#        LIFEBOAT_BENCH_RUNS=3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
scale="${LIFEBOAT_BENCH_RECOVERY_SCALE:-100}"
wal_mib="${LIFEBOAT_BENCH_RECOVERY_WAL_MIB:-1024}"
kafka_mib="${LIFEBOAT_BENCH_RECOVERY_KAFKA_MIB:-2048}"
runs="${LIFEBOAT_BENCH_RUNS:-3}"
target="${LIFEBOAT_BENCH_RECOVERY_TARGET:-time}"
[[ $target == time || $target == latest ]] || { echo "LIFEBOAT_BENCH_RECOVERY_TARGET is time or latest, not $target" >&2; exit 2; }
location="${LIFEBOAT_BENCH_RECOVERY_LOCATION:-file}"
[[ $location =~ ^(file|s3|azure)$ ]] || { echo "LIFEBOAT_BENCH_RECOVERY_LOCATION is file, s3 or azure, not $location" >&2; exit 2; }
work=/var/tmp/lifeboat-bench-recovery
# shellcheck source=infra/bench-lib.sh
source infra/bench-lib.sh

log "== building release binaries; starting Kafka"
cargo build --release --locked --bins 2>&1 | tail -1 >&2
bash infra/services.sh install kcat >&2
# shellcheck source=infra/bench-pg-lib.sh
source infra/bench-pg-lib.sh
# A broker this script starts is stopped at exit.
started_kafka=
bash infra/services.sh status | grep -q '^kafka *running' || started_kafka=1
eval "$(bash infra/services.sh start kafka)"
brokers=$LIFEBOAT_TEST_KAFKA_BROKERS
# shellcheck source=infra/bench-kafka-lib.sh
source infra/bench-kafka-lib.sh
run_id=$RANDOM
src="events-$run_id"
finish() {
  topics --delete --topic "$src|base-$run_id-.*" 2>/dev/null || true
  pg_bench_cleanup
  [[ -z $started_kafka ]] || bash infra/services.sh stop kafka >/dev/null 2>&1 || true
}
trap finish EXIT
pg_bench_setup
pg_bench_location "$location"
records=$((kafka_mib * 1024))

log "== the cell's Kafka: $records records of 1 KiB ($kafka_mib MiB), 6 partitions"
kafka_corpus "$work/values" "$records"
topics --create --topic "$src" --partitions 6 --replication-factor 1
kcat -P -b "$brokers" -t "$src" "${producer_opts[@]}" <"$work/values"
rm -f "$work/values"

port=$(cluster main "$scale")
conn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
db_bytes=$(psql_at "$port" "select pg_database_size('postgres')")
export RUST_LOG=warn
log "== full backups (database $((db_bytes >> 20)) MiB), Kafka snapshot and dump"
"$pgbr" backup --type=full >&2
"$agent" pg backup --repo "$lb_repo" --cell bench --conn "$conn" --key-file "$work/key" --output json >/dev/null
"$agent" kafka snapshot --repo "$lb_repo" --cell bench --key-file "$work/key" --brokers "$brokers" --topics "$src" --output json >/dev/null
kcat -C -b "$brokers" -t "$src" -e -q >"$work/dump"

log "== about $wal_mib MiB of WAL after the backups (the Kafka records precede it: the cut holds them all)"
wal_start=$(psql_at "$port" "select pg_current_wal_lsn()")
rows=$((scale * 100000)) step=$((scale * 100000 / 20)) from=1
until (($(psql_at "$port" "select (pg_current_wal_lsn() - '$wal_start')::bigint") >= wal_mib << 20)); do
  psql_at "$port" "update pgbench_accounts set abalance = abalance + 1 where aid between $from and $((from + step - 1))" >/dev/null
  from=$((from + step > rows ? 1 : from + step))
done
wal_bytes=$(psql_at "$port" "select (pg_current_wal_lsn() - '$wal_start')::bigint")
pgbr_target=(--type=default)
spec_target='"latest"'
if [[ $target == time ]]; then
  # The instant: after every record and update; a commit after it, archived,
  # is where Postgres stops (it cannot tell an instant past its WAL's end).
  sleep 1
  at_ms=$(date +%s%3N)
  sleep 1
  psql_at "$port" "create table after_target (x int); insert into after_target values (1)" >/dev/null
  pgbr_target=(--type=time "--target=$(date -u -d "@${at_ms:0:-3}.${at_ms: -3}" '+%Y-%m-%d %H:%M:%S.%3N+00')" --target-action=promote)
  spec_target=$(printf '{"time":"%s"}' "$(date -u -d "@${at_ms:0:-3}.${at_ms: -3}" +%Y-%m-%dT%H:%M:%S.%3NZ)")
fi
switch_wait "$port"
expected=$(psql_at "$port" "select sum(abalance) from pgbench_accounts")
bash infra/pg-cluster.sh stop "$work/main" >&2
log "   $((wal_bytes >> 20)) MiB of WAL"
[[ $location != file ]] || log "   ($(($(du -sb "$work/lb-repo/wal" | cut -f1) >> 20)) MiB archived by Lifeboat, compressed)"

spec=$(printf '{"target":%s,"kafka":true,"checks":[{"kind":"sql","name":"balances","sql":"select sum(abalance) from pgbench_accounts","expect":"%s"}]}' "$spec_target" "$expected")
mkdir -p "$work/drills"

# baseline_round I: pgBackRest's restore, replay and promotion, then kcat -P.
baseline_round() {
  local i=$1 rport t0 got
  rport=$(bash infra/pg-cluster.sh free-port)
  mkdir -p "$work/base-r/data" && chmod 700 "$work/base-r/data" && chown -R postgres:postgres "$work/base-r"
  topics --create --topic "base-$run_id-$i" --partitions 6 --replication-factor 1
  sync
  t0=$(date +%s.%N)
  timed "base_restore_$i" "$pgbr" restore --pg1-path="$work/base-r/data" --archive-mode=off "${pgbr_target[@]}"
  timed "base_replay_$i" start_and_promote base-r "$rport"
  timed "base_kafka_$i" kcat -P -b "$brokers" -t "base-$run_id-$i" "${producer_opts[@]}" <"$work/dump"
  printf -v "base_total_${i}_s" '%.2f' "$(echo "$(date +%s.%N) - $t0" | bc)"
  got=$(psql_at "$rport" "select sum(abalance) from pgbench_accounts")
  [[ $got == "$expected" ]] || lb_die "pgBackRest's restore holds balances $got, expected $expected"
  bash infra/pg-cluster.sh stop "$work/base-r" >&2
  rm -rf "$work/base-r"
  topics --delete --topic "base-$run_id-$i"
  deletions_done
}

# lifeboat_round I: one drill; its phases from its steps, its total the
# drill's time until its last restore step.
lifeboat_round() {
  local i=$1 phases
  sync
  # (A failed drill still reports its steps: the check below names the failed ones.)
  measure "lb_drill_$i" "$agent" drill run --repo "$lb_repo" --cell bench --key-file "$work/key" \
    --restore-root "$work/drills" --brokers "$brokers" --spec "$spec" --output json || true
  phases=$(python3 - "$work/lb_drill_$i.out" "$records" <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
failed = [f"{s['name']}: {s.get('message')}" for s in o["steps"] + o["checks"] if s["outcome"] == "failed"]
if failed:
    sys.exit(f"the drill failed: {failed}")
kafka = next(s for s in o["steps"] if s["name"].startswith("restore Kafka"))
if kafka["evidence"]["records"] != int(sys.argv[2]):
    sys.exit(f"the drill restored {kafka['evidence']['records']} records, not {sys.argv[2]}")
def secs(prefix):
    return sum(s["seconds"] for s in o["steps"] if s["name"].startswith(prefix))
restore, replay, kafka = secs("restore the base backup"), secs("replay WAL"), secs("restore Kafka")
# Everything after the restores: the checks' role, the checks, the cleanup.
after = secs("create the checks") + sum(c["seconds"] for c in o["checks"])
total = o["rto_seconds"] - after
print(f"{restore:.2f} {replay:.2f} {kafka:.2f} {max(total - restore - replay - kafka, 0):.2f} {total:.2f}")
EOF
  ) || lb_die "$phases"
  read -r "lb_restore_${i}_s" "lb_replay_${i}_s" "lb_kafka_${i}_s" "lb_other_${i}_s" "lb_total_${i}_s" <<<"$phases"
  deletions_done
}

log "== $runs alternating rounds of recovering the cell"
for ((round = 1; round <= runs; round++)); do
  # Separate statements: a function left of && would run with errexit off.
  if ((round % 2)); then
    baseline_round "$round"
    lifeboat_round "$round"
  else
    lifeboat_round "$round"
    baseline_round "$round"
  fi
  lb="lb_total_${round}_s" base="base_total_${round}_s"
  log "   round $round: Lifeboat ${!lb} s, baseline ${!base} s: $(ratio "${!lb}" "${!base}")"
done

for name in lb_restore lb_replay lb_kafka lb_other lb_total lb_drill base_restore base_replay base_kafka base_total; do
  round_medians "$name"
done
cat <<EOF2

Time to recover a cell, Lifeboat vs pgBackRest $(pgbackrest version | cut -d' ' -f2) + kcat ($(date -u +%FT%TZ), $(nproc) cores; pgbench scale $scale: $((db_bytes >> 20)) MiB, $((wal_bytes >> 20)) MiB of WAL to replay, Kafka $kafka_mib MiB in $records records; repositories: $location; target: $target; medians of $runs alternating rounds)
| phase | Lifeboat (drill) | baseline (in sequence) |
|---|---|---|
| Postgres base restore | ${lb_restore_s} s | ${base_restore_s} s (pgbackrest restore) |
| WAL replay to promotion | ${lb_replay_s} s | ${base_replay_s} s (archive-get) |
| Kafka restore | ${lb_kafka_s} s | ${base_kafka_s} s (kcat -P) |
| other steps (target, gap check) | ${lb_other_s} s | |
| **restore requested to accepting writes** | **${lb_total_s} s** | **${base_total_s} s** |
| ratio (goal <= 0.6) | $(ratio "$lb_total_s" "$base_total_s") | |
| peak RSS | $((lb_drill_kb / 1024)) MiB | |
EOF2
