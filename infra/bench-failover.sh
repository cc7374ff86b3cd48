#!/usr/bin/env bash
# Failover benchmark (issue 21): the measured RTO per tier of
# scenario 1 (one Tier-1 cell taken over at its recovery site), hot (its
# streaming standby at the site promoted) and cold (restored from its
# primary location), and scenario 2 (a region of three cells of tiers 1-3
# failing over cold into the DR region from their secondary-region copies,
# two at a time), with the data sizes used; then a model of the cold and
# the hot RTO at production sizes from the restore, WAL replay, promotion
# and Kafka restore throughputs measured in scenario 1. Release build,
# file:// repositories.
# Prints figures; asserts nothing about wall time.
#
# Usage: bash infra/bench-failover.sh
#   LIFEBOAT_BENCH_FAILOVER_SCALE=20 (pgbench scale of scenario 1's cell; scenario 2's cells get a quarter)
#   LIFEBOAT_BENCH_FAILOVER_LOAD_SECONDS=30 (pgbench load after the base backup: WAL to replay)
#   LIFEBOAT_BENCH_FAILOVER_EVENTS=100000 (payments, each with its Kafka event)
#   LIFEBOAT_MODEL_DB_GIB=200 LIFEBOAT_MODEL_WAL_GIB=20 LIFEBOAT_MODEL_KAFKA_RECORDS=20000000 (production sizes modelled:
#   the database, the archived (compressed) WAL since its base backup, the Kafka records in the newest snapshot)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
scale="${LIFEBOAT_BENCH_FAILOVER_SCALE:-20}"
load="${LIFEBOAT_BENCH_FAILOVER_LOAD_SECONDS:-30}"
events="${LIFEBOAT_BENCH_FAILOVER_EVENTS:-100000}"
work=/var/tmp/lifeboat-bench-failover
# shellcheck source=infra/bench-lib.sh
source infra/bench-lib.sh

log "== building release binaries; starting Postgres, Kafka"
cargo build --release --locked --bins 2>&1 | tail -1 >&2
bash infra/services.sh install postgres kcat kafka >&2
eval "$(bash infra/services.sh start kafka)"
brokers=$LIFEBOAT_TEST_KAFKA_BROKERS
bindir=$(pg_config --bindir)
lifeboat="$CARGO_TARGET_DIR/release/lifeboat"
stamp=$(date +%s)

cleanup() {
  for d in "$work"/pg-*; do [[ -d $d ]] && bash infra/pg-cluster.sh stop "$d" >/dev/null 2>&1; done
  for data in "$work"/restore/takeover-*/pgdata; do
    [[ -f $data/postmaster.pid ]] && (cd / && runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1)
  done
  [[ -n ${site_pid:-} ]] && kill "$site_pid" 2>/dev/null
  bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --delete --topic "bench-fo-.*" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
agent_for_postgres
mkdir -p "$work/restore" "$work/plan"
chmod 755 "$work/restore"
chown postgres: "$work/restore"

# create_cell NAME SCALE: a cell archiving into $work/NAME/repo at a free port (in $work/NAME.port), backed up.
create_cell() {
  local name=$1 s=$2 port repo
  port=$(bash infra/pg-cluster.sh free-port)
  echo "$port" >"$work/$name.port"
  repo="file://$work/$name/repo"
  RUST_LOG=warn "$agent" repo init --repo "$repo" --key-file "$work/key" >/dev/null
  chown -R postgres: "$work/$name"
  bash infra/pg-cluster.sh create "$work/pg-$name" "$port" "archive_mode = on" \
    "archive_command = '$agent wal-push %p --repo $repo --cell $name --key-file $work/key'" >/dev/null
  bash infra/pg-cluster.sh start "$work/pg-$name" "$port" >/dev/null
  "$bindir/pgbench" -i -q -s "$s" -h 127.0.0.1 -p "$port" -U postgres postgres 2>/dev/null
  psql_of "$name" -c "create table payments (id bigint primary key, amount numeric(12,2) not null, at timestamptz not null);
            create table ledger (payment_id bigint not null, amount numeric(12,2) not null)"
  RUST_LOG=warn "$agent" pg backup --conn "host=127.0.0.1 port=$port user=postgres dbname=postgres" \
    --repo "$repo" --cell "$name" --key-file "$work/key" --output json >"$work/$name.backup.json"
}

psql_of() { # NAME ARGS...: psql on the cell's Postgres
  local port
  port=$(cat "$work/$1.port")
  shift
  "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# load_cell NAME LOAD EVENTS: load (WAL to replay), payments each published, a snapshot, a commit after it, archived.
load_cell() {
  local name=$1 l=$2 n=$3 repo="file://$work/$1/repo" seg
  bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --create --topic "$name.payments" --partitions 3 --replication-factor 1 >/dev/null
  "$bindir/pgbench" -c 2 -T "$l" -h 127.0.0.1 -p "$(cat "$work/$name.port")" -U postgres postgres >/dev/null 2>&1
  psql_of "$name" -c "insert into payments select g, (g % 1000) / 10.0, now() from generate_series(1, $n) g;
            insert into ledger select id, amount from payments union all select id, -amount from payments"
  seq 1 "$n" | awk '{ printf "%s|{\"payment\":%s}\n", $1, $1 }' | kcat -P -q -b "$brokers" -t "$name.payments" -K '|' -X linger.ms=50
  RUST_LOG=warn "$agent" kafka snapshot --brokers "$brokers" --topics "$name\\..*" --repo "$repo" --cell "$name" --key-file "$work/key" --output json >"$work/$name.snapshot.json"
  # A commit after the snapshot (the workload goes on): the cut, Postgres' last transaction, covers every event.
  psql_of "$name" -c "create table after_snapshot (x int); insert into after_snapshot values (1)"
  seg=$(psql_of "$name" -c "select pg_walfile_name(pg_switch_wal())")
  wait_archived "$seg" 240 psql_of "$name" -c
  printf '%s %s %s\n' "$(psql_of "$name" -c "select pg_database_size('postgres')")" "$(du -sb "$work/$name/repo/wal" | cut -f1)" \
    "$(jget "$work/$name.snapshot.json" '["stored_bytes"]')" >"$work/$name.sizes"
}

# lose_cell NAME: its Postgres killed, its data directory removed.
lose_cell() {
  kill -9 "$(head -1 "$work/pg-$1/data/postmaster.pid")"
  sleep 0.5
  rm -rf "$work/pg-$1/data"
}

c1=bench-fo-c1-$stamp
c1h=bench-fo-h1-$stamp
regional=(bench-fo-r1-$stamp bench-fo-r2-$stamp bench-fo-r3-$stamp)

log "== the recovery site: an agent hosting all five cells as guests"
"$lifeboat" report keygen --out-dir "$work/keys" >/dev/null
cp "$work/keys/report-signing.pub" "$work/plan/"
openssl rand -hex 32 >"$work/token"
chmod 600 "$work/token"
site_port=$(bash infra/pg-cluster.sh free-port)
guests=(--guest "$c1@main-a=file://$work/$c1/repo" --guest "$c1h@main-a=file://$work/$c1h/repo")
for name in "${regional[@]}"; do guests+=(--guest "$name@second=file://$work/$name/second"); done
RUST_LOG=warn "$agent" repo init --repo "file://$work/site-repo" --key-file "$work/key" >/dev/null
RUST_LOG=warn "$agent" serve --repo "file://$work/site-repo" --cell site --key-file "$work/key" --token-file "$work/token" \
  --state-dir "$work/site-state" --listen "127.0.0.1:$site_port" --kafka-brokers "$brokers" --restore-root "$work/restore" \
  --plan-key "$work/keys/report-signing.pub" "${guests[@]}" >"$work/site.out" 2>"$work/site.log" &
site_pid=$!
for _ in $(seq 100); do grep -q serving "$work/site.out" && break; sleep 0.1; done

log "== scenario 1's cell $c1 (cold): pgbench scale $scale, $load s of load, $events payments and events"
create_cell "$c1" "$scale"
load_cell "$c1" "$load" "$events"
lose_cell "$c1"
for t in 1 2 3; do
  name=${regional[$((t - 1))]}
  log "== scenario 2's tier-$t cell $name: pgbench scale $((scale / 4 + 1)), $((load / 3)) s of load, $((events / 4)) payments"
  create_cell "$name" "$((scale / 4 + 1))"
  load_cell "$name" "$((load / 3))" "$((events / 4))"
  lose_cell "$name"
  RUST_LOG=warn "$agent" repo copy "file://$work/$name/repo" "file://$work/$name/second" --key-file "$work/key" >/dev/null
  chown -R postgres: "$work/$name/second"
done
log "== scenario 1's cell $c1h (hot: a streaming standby at the site): the same sizes"
create_cell "$c1h" "$scale"

pg_first=$(bash infra/pg-cluster.sh free-port)
cell_table() { # NAME TIER REGION LOCATIONS [CONNINFO [FAILOVER]]
  local failover='{ sites = ["dr"] }'
  [[ -n ${6:-} ]] && failover=$6
  cat <<EOF
[[cell]]
name = "$1"
tier = "$2"
region = "$3"
tenants = ["tenant-$1"]
agent = { url = "http://127.0.0.1:1", token = "file:$work/token" }
locations = $4
postgres = { conninfo = "${5:-host=127.0.0.1 port=1 user=postgres dbname=postgres}" }
kafka = { brokers = "$brokers", topics = "$1\\\\..*" }
failover = $failover

[[cell.smoke]]
name = "ledger balances"
sql = "select coalesce(sum(amount), 0) = 0 from ledger"
expect = "t"

[[cell.smoke]]
name = "pgbench balances"
sql = "select (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history)"
expect = "t"

[[cell.smoke]]
name = "records match the snapshot"
kafka = "records-match-snapshot"

EOF
}
{
  cat <<EOF
[plan]
name = "bench-failover"
description = "failover benchmark"
report_public_key = "report-signing.pub"

[defaults.schedules]
pg_full = "0 0 1 1 *"
pg_incremental = "0 0 1 1 *"
kafka_snapshot = "0 0 1 1 *"
drill = "0 0 1 1 *"
retention = "0 0 1 1 *"
verify_sample = "0 0 1 1 *"

[[tier]]
name = "t1"
rpo = "5m"
rto = "15m"
kafka_rpo = "90m"
strategy = "cold-standby"

[[tier]]
name = "t2"
rpo = "15m"
rto = "30m"
kafka_rpo = "90m"
strategy = "cold-standby"

[[tier]]
name = "t3"
rpo = "4h"
rto = "4h"
kafka_rpo = "4h"
strategy = "cold-standby"

[[region]]
name = "r-a"
cloud = "azure"

[[region]]
name = "r-c"
cloud = "azure"

[[region]]
name = "r-b"
cloud = "azure"

[[location]]
name = "main-a"
url = "file:///bench/main-a"
region = "r-a"
role = "primary"

[[location]]
name = "main-c"
url = "file:///bench/main-c"
region = "r-c"
role = "primary"

[[location]]
name = "second"
url = "file:///bench/second"
region = "r-b"
role = "secondary-region"

[[recovery_site]]
name = "dr"
region = "r-b"
agent = { url = "http://127.0.0.1:$site_port", token = "file:$work/token" }
capacity = 4
kafka = { brokers = "$brokers", topic_prefix = "bench-fo-dr." }
postgres = { port = $pg_first }

[[scenario]]
name = "cell-failure"
scope = "cell"
approve = []
rto = "15m"

[[scenario]]
name = "region-outage"
scope = "region"
tier_order = ["t1", "t2", "t3"]
parallelism = 2
approve = []
rto = "45m"

EOF
  cell_table "$c1" t1 r-a '["main-a", "second"]'
  cell_table "$c1h" t1 r-a '["main-a", "second"]' "host=127.0.0.1 port=$(cat "$work/$c1h.port") user=postgres dbname=postgres" \
    '{ sites = ["dr"], standby = "stream" }'
  for t in 1 2 3; do cell_table "${regional[$((t - 1))]}" "t$t" r-c '["main-c", "second"]'; done
} >"$work/plan/plan.toml"
"$lifeboat" plan validate "$work/plan" >/dev/null
drive=(--plans "$work/plan" --state "$work/state.db" --signing-key "$work/keys/report-signing.key" --output json)

log "== scenario 1 hot: $c1h's standby bootstrapped at the site, then its load streamed to it"
RUST_LOG=warn "$lifeboat" standby ensure --cell "$c1h" --plans "$work/plan" --signing-key "$work/keys/report-signing.key" --output json >"$work/standby.json"
standby_port=$(jget "$work/standby.json" '[0]["standby"]["port"]')
load_cell "$c1h" "$load" "$events"
primary_lsn=$(psql_of "$c1h" -c "select pg_current_wal_lsn()")
for _ in $(seq 600); do
  [[ $("$bindir/psql" -X -A -t -h 127.0.0.1 -p "$standby_port" -U postgres -c "select pg_last_wal_replay_lsn() >= '$primary_lsn'") == t ]] && break
  sleep 0.2
done
lose_cell "$c1h"
RUST_LOG=error "$lifeboat" failover run --scenario cell-failure --failed "$c1h" "${drive[@]}" >"$work/s1h.json" || true

log "== scenario 1: cell $c1 fails over"
RUST_LOG=error "$lifeboat" failover run --scenario cell-failure --failed "$c1" "${drive[@]}" >"$work/s1.json" || true
log "== scenario 2: region r-c fails over"
RUST_LOG=error "$lifeboat" failover run --scenario region-outage --failed r-c "${drive[@]}" >"$work/s2.json" || true

python3 - "$work" "$c1" "${LIFEBOAT_MODEL_DB_GIB:-200}" "${LIFEBOAT_MODEL_WAL_GIB:-20}" "${LIFEBOAT_MODEL_KAFKA_RECORDS:-20000000}" <<'PY'
import json, sys
work, c1, db_gib, wal_gib, kafka_records = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
MiB = 1 << 20

def sizes(cell):
    db, wal, kafka = map(int, open(f"{work}/{cell}.sizes").read().split())
    return db, wal, kafka

def restore_detail(view, cell):
    for s in view["steps"]:
        if s["cell"] == cell and s["step"] == "restore" and s["detail"]:
            return s["detail"]
    return {"steps": [], "recovery_point": {}}

def restore_steps(view, cell):
    return {x["name"]: x["seconds"] for x in restore_detail(view, cell)["steps"]}

def phase(steps, prefix):
    return sum(v for k, v in steps.items() if k.startswith(prefix))

for label, path in (("scenario 1 hot (one cell, its streaming standby promoted)", "s1h"), ("scenario 1 (one cell, cold, from its primary location)", "s1"),
                    ("scenario 2 (region of three, from the secondary-region copies, 2 at a time)", "s2")):
    view = json.load(open(f"{work}/{path}.json"))
    print(f"{label}: {view['failover']['state']}" + (f" ({view['failover']['error']})" if view["failover"].get("error") else ""))
    print(f"  {'cell':<28} {'tier':<5} {'db MiB':>8} {'WAL MiB':>8} {'Kafka MiB':>9} {'promote s':>9} {'base s':>7} {'replay s':>8} {'kafka s':>7} {'RTO s':>7} {'target s':>8}")
    for a, m in zip(view["failover"]["assessment"]["cells"], view["cells"]):
        db, wal, kafka = sizes(a["cell"])
        st = restore_steps(view, a["cell"])
        print(f"  {a['cell']:<28} {a['tier']:<5} {db / MiB:8.0f} {wal / MiB:8.1f} {kafka / MiB:9.1f} {phase(st, 'promote the standby'):9.2f} {phase(st, 'restore the base backup'):7.2f} "
              f"{phase(st, 'replay WAL'):8.2f} {phase(st, 'restore Kafka'):7.2f} {m['rto_seconds'] or float('nan'):7.1f} {a['rto_target_seconds']:8.0f}")

view = json.load(open(f"{work}/s1.json"))
st = restore_steps(view, c1)
db, wal, kafka = sizes(c1)
base_s, replay_s, kafka_s = phase(st, "restore the base backup"), phase(st, "replay WAL"), phase(st, "restore Kafka")
rto = view["cells"][0]["rto_seconds"] or 0.0
fixed = max(rto - base_s - replay_s - kafka_s, 0.0)
rate = lambda n, s: n / s if s > 0 else float("inf")
records = (restore_detail(view, c1)["recovery_point"].get("kafka") or {}).get("records", 0)
base_r, replay_r, kafka_r = rate(db, base_s), rate(wal, replay_s), rate(records, kafka_s)
print(f"measured throughput (scenario 1): base restore {base_r / MiB:.0f} MiB/s of database, WAL replay {replay_r / MiB:.1f} MiB/s of "
      f"archived (compressed) WAL, Kafka restore {kafka_r:,.0f} records/s; fixed cost {fixed:.1f} s (fence, hooks, checks, report)")
G = 1 << 30
phases = [("base restore", db_gib * G / base_r), ("WAL replay", wal_gib * G / replay_r), ("Kafka restore", kafka_records / kafka_r)]
model = fixed + sum(s for _, s in phases)
print(f"model, cold failover of one cell of {db_gib:.0f} GiB, {wal_gib:.0f} GiB of archived WAL since its base backup and "
      f"{kafka_records:,.0f} Kafka records, phases in sequence as today: {model / 60:.1f} min = "
      + " + ".join(f"{n} {s / 60:.1f}" for n, s in phases) + f" + fixed {fixed / 60:.1f} "
      "(tier 1 target 15 min, tier 2 30 min, tier 3 4 h)")

# Hot: the standby replays as the primary writes, so the database and its WAL do not count; Kafka is restored as cold.
hot = json.load(open(f"{work}/s1h.json"))
if hot["cells"] and hot["cells"][0]["rto_seconds"]:
    cell = hot["failover"]["assessment"]["cells"][0]["cell"]
    st = restore_steps(hot, cell)
    promote_s, kafka_hs = phase(st, "promote the standby"), phase(st, "restore Kafka")
    fixed_h = max(hot["cells"][0]["rto_seconds"] - promote_s - kafka_hs, 0.0)
    hot_records = (restore_detail(hot, cell)["recovery_point"].get("kafka") or {}).get("records", 0)
    kafka_hr = rate(hot_records, kafka_hs)
    model_h = fixed_h + promote_s + kafka_records / kafka_hr
    print(f"model, hot failover of the same cell (a streaming standby, replay lag about 0): {model_h / 60:.1f} min = "
          f"promotion {promote_s / 60:.1f} (measured; independent of the database's size) + Kafka restore {kafka_records / kafka_hr / 60:.1f} "
          f"(at {kafka_hr:,.0f} records/s) + fixed {fixed_h / 60:.1f}")
PY
