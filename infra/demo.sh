#!/usr/bin/env bash
# The demo (README's first command): Lifeboat's main job end to end on
# emulators of the real clouds: the cells' primary and secondary-region
# locations on Azurite (Azure Blob, an instance of the demo's own), the
# cross-cloud copy on moto (S3); LIFEBOAT_DEMO_STORAGE=file keeps every
# location in local directories instead (quicker, nothing to install
# beyond Postgres and Kafka). It installs and starts Postgres and Kafka, creates the two cells
# of plans/demo with a small payments workload (a Postgres ledger on each,
# payment events in Kafka for demo-a), starts one agent per cell and the
# coordinator on the demo plan, runs a full cycle through the coordinator
# (base backups, WAL archiving, a Kafka snapshot, an incremental, continuous
# geo-copy), prints the status table with the real RPO exposure per
# location, then drills demo-a: Postgres to a random recent instant and
# Kafka to the same instant in a scratch environment, the plan's smoke
# checks, a signed report. Then scenario 1 of the DR design: demo-a's
# primary is killed (SIGKILL, data directory removed, agent stopped) and
# `lifeboat failover run` takes it over at demo-b's agent (its recovery
# site): approval gate, fence, restore of the newest cut, smoke checks,
# route hook, a signed failover report chained after the drill's; the
# demo prints the measured RTO and what was lost (RPO)
# against the workload's own log. Then the failover is committed (the new
# primary archives and is backed up), payments are written on it, demo-a's
# agent comes back and `lifeboat failover failback` moves the cell home
# without loss (the demo counts the payments at home against the new
# primary's). Last, scenario 3: Azure is lost (Azurite stopped, or the
# Azure directories moved away), with both cells' hosts and the
# coordinator; a new coordinator on an empty state directory takes over
# from the cross-cloud copy (`serve --takeover --from-location
# cross-cloud`), finds every cell's points, report chains and failovers
# there, and `failover run --scenario azure-outage` brings both cells up
# at the AWS recovery site; the demo prints RTO and what was lost. It
# stops everything it started; the
# reports and the public key to verify them stay in
# .lifeboat-run/demo-reports/<run>/.
#
# The plan is plans/demo with this machine's free ports and a scratch
# directory put in (the shipped file names fixed ones). Everything lives in a
# temporary directory removed at the end (LIFEBOAT_DEMO_KEEP=1 keeps it, and
# leaves the services running).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
started_at=$(date +%s)

say() { if [[ -t 2 ]]; then printf '\n\033[1m== %s\033[0m\n' "$*" >&2; else printf '\n== %s\n' "$*" >&2; fi; }

storage=${LIFEBOAT_DEMO_STORAGE:-clouds}
case $storage in
  clouds) services=(kafka s3) ;;
  file) services=(kafka) ;;
  *)
    echo "LIFEBOAT_DEMO_STORAGE is clouds (Azurite and moto, the default) or file (local directories), not '$storage'" >&2
    exit 2
    ;;
esac
say "installing (when missing) and starting the services: PostgreSQL 15, kcat, Apache Kafka$([[ $storage == clouds ]] && echo ', moto (S3), Azurite (Azure Blob)')"
bash infra/services.sh install postgres kcat "${services[@]}" $([[ $storage == clouds ]] && echo azure) >&2
was_running=()
for svc in "${services[@]}"; do
  bash infra/services.sh status 2>/dev/null | grep -q "^$svc .*running" && was_running+=("$svc")
done
eval "$(bash infra/services.sh start "${services[@]}")"
brokers=$LIFEBOAT_TEST_KAFKA_BROKERS
# The demo's topics: demo-a's own, and its copies restored at the recovery sites.
demo_topics='(demo-a|dr|aws)\..*'

say "building lifeboat and lifeboat-agent (the first build takes several minutes; later ones reuse $CARGO_TARGET_DIR)"
cargo build --locked --bins 2>&1 | tail -1 >&2
lifeboat="$CARGO_TARGET_DIR/debug/lifeboat"
psql() { "$(pg_config --bindir)/psql" "$@"; }

work=$(mktemp -d -t lifeboat-demo.XXXXXX)
chmod 755 "$work" # the postgres user runs the archive command from here
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  for cell in a b; do [[ -d $work/pg-$cell ]] && bash infra/pg-cluster.sh stop "$work/pg-$cell" >/dev/null 2>&1; done
  # A takeover's server outlives the agent that started it (it is the cell's new primary).
  for data in "$work"/drills-*/takeover-*/pgdata; do
    [[ -f $data/postmaster.pid ]] && (cd / && runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1)
  done
  bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --delete --topic "$demo_topics" >/dev/null 2>&1
  if [[ -z ${LIFEBOAT_DEMO_KEEP:-} ]]; then
    for svc in "${services[@]}"; do
      [[ " ${was_running[*]} " == *" $svc "* ]] || bash infra/services.sh stop "$svc" >/dev/null 2>&1
    done
    rm -rf "$work"
  else
    echo "kept $work (services left running)" >&2
  fi
}
trap cleanup EXIT
mkdir -p "$work/bin"
install -m 755 "$CARGO_TARGET_DIR/debug/lifeboat-agent" "$work/bin/lifeboat-agent"
agent="$work/bin/lifeboat-agent"
export RUST_LOG=${RUST_LOG:-warn}

port() { bash infra/pg-cluster.sh free-port; }
# The AWS site's two guests listen on its port and the next.
two_ports() { python3 -c 'import socket
for p in range(20000, 60000, 2):
    try:
        for q in (p, p + 1): socket.create_server(("127.0.0.1", q)).close()
        print(p); break
    except OSError: pass'; }
pg_a=$(port) pg_b=$(port) agent_a=$(port) agent_b=$(port) agent_aws=$(port) coordinator=$(port) pg_dr=$(port) pg_dr_b=$(port) pg_aws=$(two_ports)
run=$(basename "$work" | tr 'A-Z.' 'a-z-')

if [[ $storage == clouds ]]; then
  say "Azure for the demo: an Azurite of its own (the demo stops it to lose Azure), its data in $work/azurite"
  azure_port=$(port)
  bash infra/services.sh azurite "$work/azurite" "$azure_port" >/dev/null 2>&1 &
  azurite_pid=$!
  pids+=("$azurite_pid")
  eval "$(bash infra/services.sh azurite-env "$azure_port")"
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$azure_port") 2>/dev/null && break; sleep 0.2; done
  (exec 3<>"/dev/tcp/127.0.0.1/$azure_port") 2>/dev/null || { echo "Azurite did not listen on port $azure_port within 60 s" >&2; exit 1; }
fi

# A cell's repository in a location is <location URL>/<cell>.
repo() {
  case $storage:$1 in
    file:*) printf 'file://%s/storage/%s/%s' "$work" "$1" "$2" ;;
    clouds:cross-cloud) printf 's3://lifeboat-demo/%s/%s/%s?endpoint=%s' "$run" "$1" "$2" "$LIFEBOAT_TEST_S3_ENDPOINT" ;;
    clouds:*) printf 'az://lifeboat-demo/%s/%s/%s?endpoint=%s' "$run" "$1" "$2" "$LIFEBOAT_TEST_AZURE_ENDPOINT" ;;
  esac
}

say "the demo plan, with this machine's ports and its locations ($storage)"
cp -r plans/demo "$work/plan"
case $storage in
  file) locations=(-e "s|file:///var/tmp/lifeboat-demo|file://$work/storage|g") ;;
  clouds) locations=(-e "s|file:///var/tmp/lifeboat-demo/cross-cloud|s3://lifeboat-demo/$run/cross-cloud|g"
    -e "s|file:///var/tmp/lifeboat-demo|az://lifeboat-demo/$run|g") ;;
esac
sed -i -e "s|127.0.0.1:9092|$brokers|g" -e "s|port=5501|port=$pg_a|g" -e "s|port=5502|port=$pg_b|g" \
  -e "s|127.0.0.1:7401|127.0.0.1:$agent_a|g" -e "s|127.0.0.1:7402|127.0.0.1:$agent_b|g" -e "s|127.0.0.1:7403|127.0.0.1:$agent_aws|g" \
  -e "s|port = 5510|port = $pg_dr|g" -e "s|port = 5520|port = $pg_dr_b|g" -e "s|port = 5530|port = $pg_aws|g" \
  "${locations[@]}" "$work/plan"/*.toml
"$lifeboat" plan validate "$work/plan"

say "secrets: a repository key, one API token for the agents (the plan reads env:LIFEBOAT_DEMO_TOKEN), an operator token"
umask 077
"$agent" key generate --out "$work/key" >&2
openssl rand -hex 32 >"$work/agent-token"
openssl rand -hex 32 >"$work/operator-token"
umask 022
export LIFEBOAT_DEMO_TOKEN=$(cat "$work/agent-token")
# The CLI presents the operator token to the coordinator (a viewer token would only read).
export LIFEBOAT_COORDINATOR="http://127.0.0.1:$coordinator" LIFEBOAT_TOKEN_FILE="$work/operator-token"

for cell in a b; do
  name=demo-$cell
  case $cell in a) pg_port=$pg_a; primary=a-primary; second=a-in-b ;; b) pg_port=$pg_b; primary=b-primary; second=b-in-a ;; esac
  say "cell $name: repository $(repo $primary $name), Postgres on port $pg_port archiving into it"
  "$agent" repo init --repo "$(repo $primary $name)" --key-file "$work/key" >&2
  [[ $storage == file ]] && chown -R postgres: "$work/storage/$primary"
  chown postgres: "$work/key"
  bash infra/pg-cluster.sh create "$work/pg-$cell" "$pg_port" \
    "archive_mode = on" "archive_timeout = 60s" \
    "archive_command = '$agent wal-push %p --repo \"$(repo $primary $name)\" --cell $name --key-file $work/key'" >/dev/null
  bash infra/pg-cluster.sh start "$work/pg-$cell" "$pg_port" >/dev/null
  psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "
    create table payments (id bigserial primary key, tenant text not null, amount numeric(12,2) not null, at timestamptz not null default now());
    create table ledger (id bigserial primary key, payment_id bigint not null references payments, account text not null, amount numeric(12,2) not null);"
done
# A broker that was already running may hold an earlier demo's topics: they go first.
if bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --list 2>/dev/null | grep -Eq "^($demo_topics)\$"; then
  bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --delete --topic "$demo_topics" >/dev/null 2>&1 || true
  for _ in $(seq 60); do
    bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --list 2>/dev/null | grep -Eq "^($demo_topics)\$" || break
    sleep 0.5
  done
fi
bash infra/services.sh kafka-topics --bootstrap-server "$brokers" --create --if-not-exists --topic demo-a.payments \
  --partitions 3 --replication-factor 1 >/dev/null

say "a payments workload: every second a few payments per cell (a debit and a credit each); demo-a also publishes each payment to Kafka"
workload() { # CELL PORT TENANTS...
  local cell=$1 port=$2; shift 2
  local tenants="array['${1}'$(printf ",'%s'" "${@:2}")]"
  while :; do
    rows=$(psql -X -q -A -t -h 127.0.0.1 -p "$port" -U postgres -c "
      with p as (insert into payments (tenant, amount)
                 select ($tenants)[1 + floor(random() * $#)::int], round((random() * 500)::numeric, 2) from generate_series(1, 3)
                 returning id, tenant, amount),
           l as (insert into ledger (payment_id, account, amount)
                 select id, 'debit:' || tenant, -amount from p union all select id, 'credit:' || tenant, amount from p)
      select id || ' ' || tenant || ' ' || amount from p") || true
    if [[ $cell == demo-a && -n $rows ]]; then
      awk '{ printf "%s|{\"payment_id\":%s,\"tenant\":\"%s\",\"amount\":%s}\n", $1, $1, $2, $3 }' <<<"$rows" |
        kcat -P -q -b "$brokers" -t demo-a.payments -K '|' 2>/dev/null || true
    fi
    sleep 1
  done
}
workload demo-a "$pg_a" acme globex &
workload_a=$!
pids+=($!)
workload demo-b "$pg_b" initech &
workload_b=$!
pids+=($!)

# serve_agent NAME PORT REPO [MORE ARGS...]: lifeboat-agent serve as NAME, once it serves.
serve_agent() {
  local name=$1 port=$2 repo=$3
  shift 3
  local args=(serve --repo "$repo" --cell "$name" --key-file "$work/key"
    --token-file "$work/agent-token" --state-dir "$work/agent-$name" --listen "127.0.0.1:$port"
    --restore-root "$work/drills-$name" --plan-key "$work/keys/report-signing.pub" "$@")
  RUST_LOG=info "$agent" "${args[@]}" >"$work/agent-$name.out" 2>"$work/agent-$name.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q serving "$work/agent-$name.out" && break; sleep 0.1; done
  cat "$work/agent-$name.out" >&2
}

# start_agent CELL AGENT_PORT PG_PORT PRIMARY SECOND [MORE ARGS...]: a
# cell's own agent, copying to the second region and the second cloud.
start_agent() {
  local name=$1 port=$2 pg_port=$3 primary=$4 second=$5
  shift 5
  serve_agent "$name" "$port" "$(repo "$primary" "$name")" --pg-conn "host=127.0.0.1 port=$pg_port user=postgres dbname=postgres" \
    --copy-to "$second=$(repo "$second" "$name")" --copy-to "cross-cloud=$(repo cross-cloud "$name")" --copy-interval 5s "$@"
}
say "the plan key: the coordinator signs drill reports and the drills' SQL checks with it; agents run only SQL it signed"
"$lifeboat" report keygen --out-dir "$work/keys" >&2

say "one agent per cell (lifeboat-agent serve): jobs over an authenticated API, continuous geo-copy to the second region and the second cloud"
# Each cell's agent is the other's recovery site: it hosts it as a guest (both cells share the demo's key).
# demo-a is Tier 1: its agent also follows its Kafka topics, sealing every 5 s (the continuous mode).
start_agent demo-a "$agent_a" "$pg_a" a-primary a-in-b --kafka-brokers "$brokers" --kafka-topics 'demo-a\..*' --kafka-follow 5s \
  --guest "demo-b@b-primary=$(repo b-primary demo-b)" --guest "demo-b@b-in-a=$(repo b-in-a demo-b)"
agent_a_pid=${pids[-1]}
start_agent demo-b "$agent_b" "$pg_b" b-primary b-in-a --kafka-brokers "$brokers" \
  --guest "demo-a@a-primary=$(repo a-primary demo-a)" --guest "demo-a@a-in-b=$(repo a-in-b demo-a)"
agent_b_pid=${pids[-1]}
say "the AWS recovery site's agent: it holds both cells' cross-cloud copies as guests (for scenario 3, at the end)"
"$agent" repo init --repo "$(repo cross-cloud aws-host)" --key-file "$work/key" >&2
serve_agent aws-host "$agent_aws" "$(repo cross-cloud aws-host)" --kafka-brokers "$brokers" \
  --guest "demo-a@cross-cloud=$(repo cross-cloud demo-a)" --guest "demo-b@cross-cloud=$(repo cross-cloud demo-b)"

say "the coordinator on the demo plan (lifeboat serve), with its state in SQLite and a key to sign drill reports"
reports="$PWD/.lifeboat-run/demo-reports/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$reports"
# The public key is published with the plan (the coordinator refuses a
# signing key the plan does not publish) and left next to the reports.
cp "$work/keys/report-signing.pub" "$reports/"
cp "$work/keys/report-signing.pub" "$work/plan/"
# The [plan] table's description is the first one (scenarios have their own).
sed -i '0,/^description = .*/{s//&\nreport_public_key = "report-signing.pub"/}' "$work/plan/demo.toml"
"$lifeboat" plan validate "$work/plan" >&2
RUST_LOG=info "$lifeboat" serve --plans "$work/plan" --state "$work/coordinator.db" --listen "127.0.0.1:$coordinator" \
  --operator-token-file "$work/operator-token" --poll 2s --standby-interval 5s --signing-key "$work/keys/report-signing.key" --reports "$reports" >"$work/coordinator.out" 2>"$work/coordinator.log" &
coordinator_pid=$!
pids+=($!)
for _ in $(seq 100); do grep -q "on http" "$work/coordinator.out" && break; sleep 0.1; done
cat "$work/coordinator.out" >&2

say "full base backups of both cells, through the coordinator"
"$lifeboat" backup run --cell demo-a --kind full &
full_a=$!
"$lifeboat" backup run --cell demo-b --kind full
wait "$full_a"

say "a Kafka snapshot of demo-a's topics"
"$lifeboat" snapshot run --cell demo-a

say "hot standbys (tier-1 is active-passive): each cell's recovery site, the other cell's agent, bootstraps one from the cell's newest base backup (demo-a's on port $pg_dr) and it streams from the cell's primary"
"$lifeboat" standby ensure --plans "$work/plan" --signing-key "$work/keys/report-signing.key"

say "more payments, then an incremental backup of demo-a"
sleep 3
"$lifeboat" backup run --cell demo-a --kind incremental

say "another Kafka snapshot: a drill's instant must be covered by Postgres' WAL and by a snapshot"
"$lifeboat" snapshot run --cell demo-a

say "switching WAL so the newest payments are archived, then waiting for the geo-copies"
for p in "$pg_a" "$pg_b"; do psql -X -q -A -t -h 127.0.0.1 -p "$p" -U postgres -c "select pg_switch_wal()" >/dev/null; done
for _ in $(seq 60); do
  verdict=$("$lifeboat" status --output json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["verdict"])' 2>/dev/null || true)
  [[ $verdict == ok ]] && break
  sleep 1
done

say "status: per cell and location, RPO exposure (now minus the newest recoverable point) against the tier's target"
"$lifeboat" status

say "run history (the coordinator's SQLite state)"
"$lifeboat" runs list

say "a few of the coordinator's Prometheus metrics (GET $LIFEBOAT_COORDINATOR/metrics with a token; the page for people is $LIFEBOAT_COORDINATOR/, the token as password)"
curl -s -H "Authorization: Bearer $(cat "$work/operator-token")" "$LIFEBOAT_COORDINATOR/metrics" | grep -E '^lifeboat_(cell_rpo_exposure_seconds|geo_copy_lag_seconds)' | head -8

say "a restore drill of demo-a through the coordinator: a random recent instant, Postgres (PITR) and Kafka (prefixed scratch topics) restored to it, the plan's smoke checks, a signed report"
drill_status=0
"$lifeboat" drill run --cell demo-a || drill_status=$?

say "the auditor's check: signatures and chain, offline, with the public key only"
"$lifeboat" report verify "$reports/demo-a" --public-key "$reports/report-signing.pub"
echo "open the report: $(ls "$reports"/demo-a/*.html | tail -1)" >&2

say "status now includes the drill: its demonstrated RTO/RPO and the restore success rate"
"$lifeboat" status

say "scenario 1: demo-a's primary is lost: its workload stops, Postgres is killed (SIGKILL) and its data directory removed, its agent stops"
kill "$workload_a" 2>/dev/null || true
wait "$workload_a" 2>/dev/null || true
# The workload's own log: every payment the old primary committed, and when.
committed=$(psql -X -q -A -t -F ' ' -h 127.0.0.1 -p "$pg_a" -U postgres -c "select count(*), extract(epoch from max(at)) from payments")
kill -9 "$(head -1 "$work/pg-a/data/postmaster.pid")"
failed_at=$(date +%s.%N)
sleep 1
rm -rf "$work/pg-a/data"
kill "$agent_a_pid"
wait "$agent_a_pid" 2>/dev/null || true
echo "the old primary had committed $committed (count, last commit epoch)" >&2

say "failover plan: what scenario cell-failure would do (demo-a's agent is gone: its recovery site reads demo-a's points from its repositories)"
env -u LIFEBOAT_COORDINATOR "$lifeboat" failover plan --scenario cell-failure --failed demo-a --plans "$work/plan" || true

say "failover run: journaled in the coordinator's state database; it stops at the gate before the fence (the point of no return)"
export LIFEBOAT_DEMO_HOOK_LOG="$work/hooks.log"
failover=(--plans "$work/plan" --state "$work/coordinator.db" --signing-key "$work/keys/report-signing.key" --reports "$reports")
id=$("$lifeboat" failover run --scenario cell-failure --failed demo-a --failed-at "$(date -u -d "@$failed_at" +%Y-%m-%dT%H:%M:%S.%NZ)" \
  --by "demo operator" "${failover[@]}" --output json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["failover"]["id"])')
"$lifeboat" failover status "$id" --state "$work/coordinator.db"

say "approve: fence demo-a in its repositories, promote its standby at demo-b's agent (Kafka restored up to its last transaction), smoke checks, the route hook"
failover_status=0
"$lifeboat" failover approve "$id" --by "demo operator" "${failover[@]}" || failover_status=$?

say "the new primary of demo-a on demo-b's host (port $pg_dr): what it holds against what the old primary committed"
restored=$(psql -X -q -A -t -F ' ' -h 127.0.0.1 -p "$pg_dr" -U postgres -c "select count(*), extract(epoch from max(at)) from payments")
python3 - "$committed" "$restored" "$failed_at" "$("$lifeboat" failover status "$id" --state "$work/coordinator.db" --output json)" <<'PY'
import datetime, json, sys
(c_n, c_at), (r_n, r_at) = (x.split() for x in sys.argv[1:3])
failed = float(sys.argv[3])
status = json.loads(sys.argv[4])
cell = status["cells"][0]
ends = [datetime.datetime.fromisoformat(s["finished"].replace("Z", "+00:00")).timestamp() for s in status["steps"] if s["finished"]]
print(f"payments: {r_n} restored of {c_n} committed; lost {int(c_n) - int(r_n)} payments, "
      f"the last {float(c_at) - float(r_at):.1f} s before the failure (RPO: the standby streamed up to the kill)", file=sys.stderr)
restore = next((s["detail"] for s in status["steps"] if s["step"] == "restore"), {})
if restore.get("kafka_rpo_seconds") is not None:
    print(f"Kafka: restored from the newest seal, taken {restore['kafka_rpo_seconds']:.1f} s before the cut "
          f"(demo-a's agent follows its topics, sealing every 5 s)", file=sys.stderr)
print(f"RTO: {cell['rto_seconds']:.1f} s from failover run to the cell's last step (the approval included); "
      f"{max(ends) - failed:.1f} s from the kill", file=sys.stderr)
PY
echo "Kafka at the recovery site: $(kcat -C -b "$brokers" -t dr.demo-a.demo-a.payments -e -q 2>/dev/null | wc -l) payment events in dr.demo-a.demo-a.payments" >&2
echo "the route hook was told:" >&2
grep '"step":"route"' "$work/hooks.log" >&2 || true
"$agent" fence show --repo "$(repo a-primary demo-a)" --cell demo-a --key-file "$work/key" >&2

say "the failover report, signed onto demo-a's chain after its drill report: the auditor's check again"
"$lifeboat" report verify "$reports/demo-a" --public-key "$reports/report-signing.pub"
echo "open the failover report: $(ls "$reports"/demo-a/*"$id"*.html)" >&2

say "commit: demo-a's new primary archives its timeline into demo-a's repository (its WAL was held since the promotion) and gets a base backup there"
"$lifeboat" failover commit "$id" "${failover[@]}" || failover_status=$?
workload demo-a "$pg_dr" acme globex &
late=$!
sleep 3
kill "$late" 2>/dev/null || true
wait "$late" 2>/dev/null || true

say "demo-a's host is back: its agent restarts, knowing its data directory (--pg-data); failback rebuilds it as a standby of the new primary, stops the new primary once its WAL is archived and streamed, fences it, promotes the home past its last WAL"
start_agent demo-a "$agent_a" "$pg_a" a-primary a-in-b --kafka-brokers "$brokers" --kafka-topics 'demo-a\..*' --kafka-follow 5s \
  --guest "demo-b@b-primary=$(repo b-primary demo-b)" --guest "demo-b@b-in-a=$(repo b-in-a demo-b)" --pg-data "$work/pg-a/data"
agent_a_pid=${pids[-1]}
at_site=$(psql -X -q -A -t -h 127.0.0.1 -p "$pg_dr" -U postgres -c "select count(*) from payments")
"$lifeboat" failover failback "$id" "${failover[@]}" || failover_status=$?
at_home=$(psql -X -q -A -t -h 127.0.0.1 -p "$pg_a" -U postgres -c "select count(*) from payments") || at_home="none (the home is not up)"
echo "failback: $at_home payments at home, the new primary had $at_site: lost $((at_site - at_home))" >&2
[[ $at_home == "$at_site" ]] || failover_status=1

say "demo-a takes payments at home again; a few seconds of normal running (WAL archived, copied to the second cloud every 5 s)"
workload demo-a "$pg_a" acme globex &
workload_a=$!
pids+=($!)
sleep 12

say "scenario 3: Azure is lost: both cells' hosts (workloads stopped, Postgres killed, data directories removed, agents gone), the coordinator with its state database, and Azure's storage"
kill "$workload_a" "$workload_b" 2>/dev/null || true
wait "$workload_a" "$workload_b" 2>/dev/null || true
declare -A committed_at_loss
for cell in a b; do
  p=$([[ $cell == a ]] && echo "$pg_a" || echo "$pg_b")
  committed_at_loss[$cell]=$(psql -X -q -A -t -F ' ' -h 127.0.0.1 -p "$p" -U postgres -c "select count(*), extract(epoch from max(at)) from payments") ||
    committed_at_loss[$cell]="0 0"
  kill -9 "$(head -1 "$work/pg-$cell/data/postmaster.pid" 2>/dev/null)" 2>/dev/null || true
done
lost_at=$(date +%s.%N)
sleep 1
rm -rf "$work/pg-a/data" "$work/pg-b/data"
for pid in "$agent_a_pid" "$agent_b_pid" "$coordinator_pid"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
case $storage in
  clouds) kill "$azurite_pid" && wait "$azurite_pid" 2>/dev/null || true
    echo "Azurite stopped: every az:// location (the cells' primaries and second-region copies) is gone" >&2 ;;
  file) for l in a-primary b-primary a-in-b b-in-a; do mv "$work/storage/$l" "$work/storage/lost-$l"; done
    echo "the Azure directories moved away: the cells' primaries and second-region copies are gone" >&2 ;;
esac
echo "demo-a had committed ${committed_at_loss[a]}, demo-b ${committed_at_loss[b]} (count, last commit epoch)" >&2

say "a new coordinator on an empty state directory takes over from the cross-cloud copy: lifeboat serve --takeover --from-location cross-cloud"
coordinator2=$(port)
mkdir -p "$work/takeover"
RUST_LOG=info "$lifeboat" serve --plans "$work/plan" --state "$work/takeover/state.db" --listen "127.0.0.1:$coordinator2" \
  --takeover --from-location cross-cloud --operator-token-file "$work/operator-token" --poll 2s --standby-interval 0 \
  --signing-key "$work/keys/report-signing.key" --reports "$reports/takeover" >"$work/takeover.out" 2>"$work/takeover.log" &
pids+=($!)
for _ in $(seq 600); do grep -q "on http" "$work/takeover.out" && break; sleep 0.1; done
if ! grep -q "on http" "$work/takeover.out"; then
  echo "the takeover coordinator did not start within 60 s:" >&2
  tail -5 "$work/takeover.log" >&2
  exit 1
fi
export LIFEBOAT_COORDINATOR="http://127.0.0.1:$coordinator2"
found=$(curl -fsS -H "Authorization: Bearer $(cat "$work/operator-token")" "$LIFEBOAT_COORDINATOR/v1/takeover")
python3 - "$found" <<'PY'
import json, sys
t = json.loads(sys.argv[1])
lost = ", ".join(t["lost_locations"])
print(f"taken over from {t['from_location']} (lost: {lost}); failovers read back from mirrored journals: {len(t['imported_failovers'])}", file=sys.stderr)
for c in t["cells"]:
    chain = "verified" if c["chain_verified"] else "NOT verified: " + "; ".join(c["chain_problems"] + c["problems"])
    agent = "lost" if c["agent_lost"] else "answers"
    p = c.get("stored_plan")
    plan = "no plan stored" if not p else (f"plan {p['sha256'][:12]} stored {p['signed_at']}, "
        f"{'signed with the plan key' if p['verified'] else 'NOT signed with the plan key'}, "
        f"{'the one this coordinator runs' if p['running'] else 'NOT the one this coordinator runs'}")
    print(f"  {c['cell']}: read by {c['site']}, its own agent {agent}; Postgres to {c['postgres_point']}, Kafka to {c['kafka_point']}; "
          f"{c['reports']} report(s), chain {chain}; {plan}", file=sys.stderr)
PY
"$lifeboat" status

say "failover run --scenario azure-outage: both cells come up at the AWS site from their copies (no gate in this scenario)"
takeover_failover=(--plans "$work/plan" --state "$work/takeover/state.db" --signing-key "$work/keys/report-signing.key" --reports "$reports/takeover")
outage_status=0
outage=$("$lifeboat" failover run --scenario azure-outage --failed azure --failed-at "$(date -u -d "@$lost_at" +%Y-%m-%dT%H:%M:%S.%NZ)" \
  --by "demo operator" "${takeover_failover[@]}" --output json) || outage_status=$?
python3 - "$outage" "$(pg_config --bindir)/psql" "${committed_at_loss[a]}" "${committed_at_loss[b]}" <<'PY' || outage_status=1
import json, subprocess, sys
done = json.loads(sys.argv[1])
print(f"failover {done['failover']['id']}: {done['failover']['state']}", file=sys.stderr)
committed = {"demo-a": sys.argv[3].split(), "demo-b": sys.argv[4].split()}
ok = done["failover"]["state"] == "done"
for c in done["cells"]:
    n, at = committed[c["cell"]]
    if c["rto_seconds"] is None:
        print(f"  {c['cell']}: not done", file=sys.stderr)
        continue
    got = subprocess.run([sys.argv[2], "-X", "-q", "-A", "-t", "-F", " ", "-h", "127.0.0.1", "-p", str(c["postgres_port"]), "-U", "postgres",
                          "-c", "select count(*), extract(epoch from max(at)) from payments"], capture_output=True, text=True).stdout.split()
    rto = c["rto_seconds"]
    print(f"  {c['cell']} at {c['site']} (port {c['postgres_port']}): {got[0]} payments restored of {n} committed, lost {int(n) - int(got[0])}, "
          f"the last {float(at) - float(got[1]):.1f} s before the loss (RPO); RTO {rto:.1f} s", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
echo "Kafka in AWS: $(kcat -C -b "$brokers" -t aws.demo-a.demo-a.payments -e -q 2>/dev/null | wc -l) payment events in aws.demo-a.demo-a.payments" >&2

say "the auditor's check of the chains the takeover found and continued"
for cell in demo-a demo-b; do
  "$lifeboat" report verify "$reports/takeover/$cell" --public-key "$reports/report-signing.pub" || outage_status=1
done
[[ $failover_status == 0 && $drill_status == 0 && $outage_status == 0 ]] || drill_status=1

say "demo finished in $(( $(date +%s) - started_at )) s; stopping everything it started"
exit "$drill_status"
