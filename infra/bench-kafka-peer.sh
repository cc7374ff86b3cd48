#!/usr/bin/env bash
# A Kafka backup peer side by side (issue 24, item 2): Lifeboat's `kafka
# snapshot` and `kafka restore` against OSO's kafka-backup engine (crate
# kafka-backup-core, driven by infra/bench/kafka-backup-peer, its own Cargo
# workspace, built here and not by the tests), on the same topic of
# $MIB MiB (1 KiB records, 6 partitions), into the same kinds of location:
# a local directory (file://) and S3 (moto). Both zstd level 1; Lifeboat also
# encrypts, hashes every record and chunk, checks for gaps and restores
# record-exact with idempotent production; the peer does none of those.
# Prints time, CPU, peak RSS and bytes stored for both, and the ratios
# against the goals (backup <= 0.7, restore <= 0.8 of the peer's); asserts
# nothing about wall time. Every restore is counted back with kcat.
# Usage: bash infra/bench-kafka-peer.sh   (LIFEBOAT_BENCH_KAFKA_MIB=2048, LIFEBOAT_BENCH_RUNS=3,
#        LIFEBOAT_BENCH_PEER_LOCATIONS="file s3")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mib="${LIFEBOAT_BENCH_KAFKA_MIB:-2048}"
runs="${LIFEBOAT_BENCH_RUNS:-3}"
locations="${LIFEBOAT_BENCH_PEER_LOCATIONS:-file s3}"
records=$((mib * 1024))
work="${LIFEBOAT_BENCH_DIR:-$(mktemp -d /var/tmp/lifeboat-bench-peer.XXXXXX)}"
# shellcheck source=infra/bench-lib.sh
source infra/bench-lib.sh

log "== building Lifeboat and the peer's harness (its own workspace and target directory)"
cargo build --release --locked --bins 2>&1 | tail -1 >&2
CARGO_TARGET_DIR="$cache/peer-target" cargo build --release --manifest-path infra/bench/kafka-backup-peer/Cargo.toml 2>&1 | tail -1 >&2
agent="$CARGO_TARGET_DIR/release/lifeboat-agent"
peer="$cache/peer-target/release/kafka-backup-peer"
bash infra/services.sh install kcat >&2
started=$(bash infra/services.sh status | awk '$2 != "running" && ($1 == "kafka" || $1 == "s3") {print $1}' | xargs)
# A directory given in LIFEBOAT_BENCH_DIR is the caller's: only a made one is removed.
made=${LIFEBOAT_BENCH_DIR:+no}
trap '[[ -n $made ]] || rm -rf "$work"; [[ -z $started ]] || bash infra/services.sh stop $started >/dev/null 2>&1 || true' EXIT
eval "$(bash infra/services.sh start kafka s3)"
brokers=$LIFEBOAT_TEST_KAFKA_BROKERS
# shellcheck source=infra/bench-kafka-lib.sh
source infra/bench-kafka-lib.sh
py="$cache/venv/bin/python"
# s3 BUCKET create|bytes PREFIX: make the bucket; the bytes stored under PREFIX.
s3() {
  "$py" - "$LIFEBOAT_TEST_S3_ENDPOINT" "$@" <<'EOF'
import sys, boto3
endpoint, bucket, what = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
if what == "create":
    s3.create_bucket(Bucket=bucket)
else:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4])
    print(sum(o["Size"] for p in pages for o in p.get("Contents", [])))
EOF
}

run_id=$RANDOM
src="peer-src-$run_id"
log "== corpus: $records records of 1 KiB ($mib MiB), 6 partitions"
kafka_corpus "$work/values" "$records"
topics --create --topic "$src" --partitions 6 --replication-factor 1
kcat -P -b "$brokers" -t "$src" "${producer_opts[@]}" <"$work/values"
rm -f "$work/values"
kcat -C -b "$brokers" -t "$src" -e -q >/dev/null # the page cache, warm for both
"$agent" key generate --out "$work/key" 2>/dev/null
export LIFEBOAT_KEY_FILE="$work/key" RUST_LOG=warn
bucket="peer-bench-$run_id"
s3 "$bucket" create

# where LOC TOOL N: the location of try N (a new, empty one per try).
where() {
  case $1/$2 in
    file/lb) echo "file://$work/lb-$3" ;;
    file/peer) printf '{backend: filesystem, path: "%s"}' "$work/peer-$3" ;;
    s3/lb) echo "s3://$bucket/lb-$3?endpoint=$LIFEBOAT_TEST_S3_ENDPOINT" ;;
    s3/peer) printf '{backend: s3, bucket: "%s", prefix: "peer-%s", region: "us-east-1", endpoint: "%s", access_key: "testing", secret_key: "testing", path_style: true, allow_http: true}' "$bucket" "$3" "$LIFEBOAT_TEST_S3_ENDPOINT" ;;
  esac
}
# stored LOC TOOL N: bytes the try stored.
stored() {
  case $1 in
    file) du -sb "$work/$2-$3" | cut -f1 ;;
    s3) s3 "$bucket" bytes "$2-$3" ;;
  esac
}
# peer_config KIND LOC N: the peer's YAML for try N.
peer_config() {
  sed -e "s|@BACKUP_ID@|b$3|g; s|@BROKERS@|$brokers|g; s|@TOPIC@|$src|g; s|@RESTORED_TOPIC@|peer-r$run_id-$2-$3|g" \
    -e "s|@STORAGE@|$(where "$2" peer "$3" | sed 's/[&|]/\\&/g')|" \
    "infra/bench/kafka-backup-peer/$1.yaml.tmpl" >"$work/peer-$1-$2-$3.yaml"
  echo "$work/peer-$1-$2-$3.yaml"
}
# count TOPIC: its records, read back with kcat.
count() { kcat -C -b "$brokers" -t "$1" -e -q -f 'x\n' | wc -l; }

# round LOC N: both tools back up, then restore into new topics; the first
# round of each location counts the restored records back.
round() {
  local loc=$1 i=$2 restored
  sync
  [[ $loc != file ]] || mkdir -p "$work/lb-$i"
  "$agent" repo init --repo "$(where "$loc" lb "$i")" >/dev/null
  # Which tool goes first alternates by round.
  local tool order=(peer lb)
  ((i % 2)) || order=(lb peer)
  for tool in "${order[@]}"; do
    sync
    case $tool in
      peer) measure "peer_backup_${loc}_$i" "$peer" backup "$(peer_config backup "$loc" "$i")" ;;
      lb) measure "lb_backup_${loc}_$i" "$agent" kafka snapshot --repo "$(where "$loc" lb "$i")" --cell bench --brokers "$brokers" --topics "$src" --output json ;;
    esac
  done
  printf -v "peer_stored_${loc}_$i" '%s' "$(stored "$loc" peer "$i")"
  printf -v "lb_stored_${loc}_$i" '%s' "$(stored "$loc" lb "$i")"
  topics --create --topic "lbr$run_id-$loc-$i-$src" --partitions 6 --replication-factor 1
  for tool in "${order[@]}"; do
    sync
    case $tool in
      peer) measure "peer_restore_${loc}_$i" "$peer" restore "$(peer_config restore "$loc" "$i")" ;;
      lb) measure "lb_restore_${loc}_$i" "$agent" kafka restore --repo "$(where "$loc" lb "$i")" --cell bench --brokers "$brokers" \
        --topic-prefix "lbr$run_id-$loc-$i-" --output json ;;
    esac
  done
  if ((i == 1)); then
    for restored in "peer-r$run_id-$loc-$i" "lbr$run_id-$loc-$i-$src"; do
      [[ $(count "$restored") == "$records" ]] || lb_die "$restored holds $(count "$restored") records, expected $records"
    done
  fi
  topics --delete --topic "peer-r$run_id-$loc-$i|lbr$run_id-$loc-$i-$src"
  deletions_done
  rm -rf "$work/lb-$i" "$work/peer-$i"
}

for loc in $locations; do
  log "== $loc: $runs rounds"
  for ((round_no = 1; round_no <= runs; round_no++)); do round "$loc" "$round_no"; done
  for name in {lb,peer}_{backup,restore}_"$loc"; do round_medians "$name"; done
done

printf '\nLifeboat vs kafka-backup-core %s (%s, %s cores; %s MiB, %s records of 1 KiB, 6 partitions; zstd level 1; medians of %s rounds)\n' \
  "$(grep -o '"=[0-9.]*"' infra/bench/kafka-backup-peer/Cargo.toml | tr -d '"=')" "$(date -u +%FT%TZ)" "$(nproc)" "$mib" "$records" "$runs"
echo "| location | measure | Lifeboat | kafka-backup-core | ratio | goal |"
echo "|---|---|---|---|---|---|"
for loc in $locations; do
  lb_b="lb_backup_${loc}_s" peer_b="peer_backup_${loc}_s" lb_r="lb_restore_${loc}_s" peer_r="peer_restore_${loc}_s"
  lb_bc="lb_backup_${loc}_cpu" peer_bc="peer_backup_${loc}_cpu" lb_rc="lb_restore_${loc}_cpu" peer_rc="peer_restore_${loc}_cpu"
  lb_bk="lb_backup_${loc}_kb" peer_bk="peer_backup_${loc}_kb" lb_rk="lb_restore_${loc}_kb" peer_rk="peer_restore_${loc}_kb"
  lb_st="lb_stored_${loc}_1" peer_st="peer_stored_${loc}_1"
  echo "| $loc | backup | ${!lb_b} s | ${!peer_b} s | $(ratio "${!lb_b}" "${!peer_b}") | <= 0.7 |"
  echo "| $loc | restore | ${!lb_r} s | ${!peer_r} s | $(ratio "${!lb_r}" "${!peer_r}") | <= 0.8 |"
  echo "| $loc | CPU seconds, backup / restore | ${!lb_bc} / ${!lb_rc} | ${!peer_bc} / ${!peer_rc} | | |"
  echo "| $loc | peak RSS, backup / restore | $((${!lb_bk} / 1024)) / $((${!lb_rk} / 1024)) MiB | $((${!peer_bk} / 1024)) / $((${!peer_rk} / 1024)) MiB | | |"
  echo "| $loc | bytes stored | $((${!lb_st} >> 20)) MiB | $((${!peer_st} >> 20)) MiB | $(ratio "${!lb_st}" "${!peer_st}") | |"
done
topics --delete --topic "$src" || true
