#!/usr/bin/env bash
# Drill benchmark (issue 6): the demonstrated RTO of a restore drill on a
# demo-sized cell (pgbench scale $SCALE, $SECONDS_OF_LOAD s of pgbench load to
# replay, $EVENTS payments each with its Kafka event) and its phase breakdown:
# how much of the drill is Lifeboat's own work and how much is Postgres
# replaying WAL. Prints figures; asserts nothing about wall time.
# Usage: bash infra/bench-drill.sh   (LIFEBOAT_BENCH_DRILL_SCALE=10, _EVENTS=100000, _LOAD_SECONDS=30)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
scale="${LIFEBOAT_BENCH_DRILL_SCALE:-10}"
events="${LIFEBOAT_BENCH_DRILL_EVENTS:-100000}"
load="${LIFEBOAT_BENCH_DRILL_LOAD_SECONDS:-30}"
work=/var/tmp/lifeboat-bench-drill
# shellcheck source=infra/bench-lib.sh
source infra/bench-lib.sh

log "== building release binaries; starting Postgres, Kafka"
cargo build --release --locked --bins 2>&1 | tail -1 >&2
bash infra/services.sh install postgres kcat kafka >&2
eval "$(bash infra/services.sh start kafka)"
brokers=$LIFEBOAT_TEST_KAFKA_BROKERS
bindir=$(pg_config --bindir)
psql() { "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }

cleanup() {
  bash infra/pg-cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  [[ -n ${topic:-} ]] && bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --delete --topic "$topic" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
agent_for_postgres
repo="file://$work/repo"
cell=bench-drill-$(date +%s)
topic="$cell.payments"
RUST_LOG=warn "$agent" repo init --repo "$repo" --key-file "$work/key" >/dev/null
chown -R postgres: "$work/repo"
port=$(bash infra/pg-cluster.sh free-port)
bash infra/pg-cluster.sh create "$work/pg" "$port" "archive_mode = on" \
  "archive_command = '$agent wal-push %p --repo $repo --cell $cell --key-file $work/key'" >/dev/null
bash infra/pg-cluster.sh start "$work/pg" "$port" >/dev/null
conn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
a() { RUST_LOG=warn "$agent" "$@" --repo "$repo" --cell "$cell" --key-file "$work/key" --output json; }

log "== pgbench scale $scale, payments and ledger tables, a full backup"
"$bindir/pgbench" -i -q -s "$scale" -h 127.0.0.1 -p "$port" -U postgres postgres 2>/dev/null
psql -c "create table payments (id bigint primary key, amount numeric(12,2) not null, at timestamptz not null);
         create table ledger (payment_id bigint not null, amount numeric(12,2) not null)"
a pg backup --conn "$conn" >"$work/backup.json"
bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --create --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null

log "== after the backup: $load s of pgbench (WAL to replay), then $events payments, each published to Kafka"
"$bindir/pgbench" -c 2 -T "$load" -h 127.0.0.1 -p "$port" -U postgres postgres >"$work/pgbench.out" 2>&1
psql -c "insert into payments select g, (g % 1000) / 10.0, now() from generate_series(1, $events) g;
         insert into ledger select id, amount from payments union all select id, -amount from payments"
seq 1 "$events" | awk '{ printf "%s|{\"payment\":%s}\n", $1, $1 }' | kcat -P -q -b "$brokers" -t "$topic" -K '|' -X linger.ms=50
sleep 1
target=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1
a kafka snapshot --brokers "$brokers" --topics "$cell\\..*" >"$work/snapshot.json"
# A commit after the target, archived: Postgres stops at the target on it.
psql -c "create table after_target (x int); insert into after_target values (1)"
seg=$(psql -c "select pg_walfile_name(pg_switch_wal())")
wait_archived "$seg" 120 psql -c
wal=$(du -sb "$work/repo/wal" | cut -f1)
log "archived WAL in the repository: $((wal / 1048576)) MiB (compressed); database $(psql -c "select pg_size_pretty(pg_database_size('postgres'))")"

spec=$(cat <<EOF2
{"target":{"time":"$target"},"kafka":true,"checks":[
 {"kind":"sql","name":"ledger balances","sql":"select coalesce(sum(amount),0) = 0 from ledger","expect":"t"},
 {"kind":"sql","name":"pgbench balances","sql":"select (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history)","expect":"t"},
 {"kind":"records-match-snapshot","name":"records match the snapshot"},
 {"kind":"payments-have-events","name":"every payment has its event","sql":"select id::text, at from payments","topic":"$topic","grace":"5s"}]}
EOF2
)
log "== the drill, to $target"
mkdir -p "$work/drills"
timed drill "$agent" drill run --repo "$repo" --cell "$cell" --key-file "$work/key" --restore-root "$work/drills" \
  --brokers "$brokers" --spec "$spec" --output json >"$work/drill.json" || true
python3 - "$work/drill.json" "$events" "$scale" <<'EOF2'
import json, sys
o = json.load(open(sys.argv[1]))
print(f"drill of pgbench scale {sys.argv[3]} + {sys.argv[2]} events: " + ("PASSED" if all(s["outcome"] != "failed" for s in o["steps"] + o["checks"]) else "FAILED"))
for s in o["steps"] + o["checks"]:
    print(f"  {s['outcome']:8} {s['seconds']:7.2f} s  {s['name']}" + (f": {s['message']}" if s.get("message") else ""))
rto, replay = o["rto_seconds"], o["replay_seconds"]
print(f"demonstrated RTO {rto:.2f} s (tier 1 target 900 s); Postgres RPO {o['pg_rpo_seconds']} s; Kafka RPO {o['kafka_rpo_seconds']:.1f} s")
print(f"share of the drill: Postgres WAL replay {100 * replay / rto:.1f} %, Lifeboat's own work {100 * (rto - replay) / rto:.1f} %")
EOF2
