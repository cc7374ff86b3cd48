#!/usr/bin/env bash
# Repository benchmark (issue 2). Prints ratios against baselines measured in
# the same run on the same data and disk; asserts nothing about wall time.
#   ingest:  files backup of a pgbench-initialised data directory (~3 GiB with
#            its WAL at scale 130) vs `tar | zstd -1 | sha256sum` (bar: ratio >= 0.8)
#   dedup:   second backup of the unchanged corpus           (bar: < 1 % new bytes)
#            after changing 2 % of the files (8 KiB each)    (bar: < 10 % new bytes)
#   memory:  peak RSS of every Lifeboat step                 (bar: < 300 MiB)
#   copy:    repo copy between two file:// repositories vs `cp -r` (bar: ratio >= 0.8),
#            and how long the disk was busy writing during each; the same
#            contest between two tmpfs repositories, where no disk write waits
# Page cache is warm for baseline and Lifeboat alike (both read once before).
# Usage: bash infra/bench-repository.sh   (LIFEBOAT_BENCH_SCALE=130, LIFEBOAT_BENCH_DIR=/var/tmp/...)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/target}"
cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
scale="${LIFEBOAT_BENCH_SCALE:-130}"
work="${LIFEBOAT_BENCH_DIR:-$(mktemp -d /var/tmp/lifeboat-bench.XXXXXX)}"
trap 'rm -rf "$work"' EXIT

# shellcheck source=infra/bench-lib.sh
source infra/bench-lib.sh

log "== building release binaries"
cargo build --release --locked --bins 2>&1 | tail -1 >&2
agent="$CARGO_TARGET_DIR/release/lifeboat-agent"

bash infra/services.sh install postgres >&2
bindir=$(pg_config --bindir)
# Outside $HOME: the postgres user must reach it. Kept for later runs.
corpus_home="${LIFEBOAT_BENCH_CORPUS:-/var/tmp/lifeboat-bench-corpus/pgbench-s$scale}"
corpus="$corpus_home/data"
if [[ ! -f $corpus_home/.complete ]]; then
  log "== creating the corpus: pgbench -i -s $scale (cached in $corpus_home)"
  rm -rf "$corpus_home"
  mkdir -p "$corpus_home"
  port=$(bash infra/pg-cluster.sh free-port)
  bash infra/pg-cluster.sh create "$corpus_home" "$port" >&2
  bash infra/pg-cluster.sh start "$corpus_home" >&2
  "$bindir/pgbench" -i -q -s "$scale" -h 127.0.0.1 -p "$port" -U postgres postgres >&2
  "$bindir/psql" -q -h 127.0.0.1 -p "$port" -U postgres -c checkpoint postgres
  bash infra/pg-cluster.sh stop "$corpus_home" >&2
  touch "$corpus_home/.complete"
fi
corpus_bytes=$(du -sb "$corpus" | cut -f1)
corpus_files=$(find "$corpus" -type f | wc -l)
log "corpus: $corpus ($((corpus_bytes >> 20)) MiB, $corpus_files files)"

log "== warming the page cache"
tar -cf - -C "$corpus" . >/dev/null

log "== ingest (median of 3 runs each; each Lifeboat run into a fresh repository)"
# Every try starts with the machine's free memory warm (see warm_free_memory).
median_of 3 baseline 'warm_free_memory' bash -c "tar -cf - -C '$corpus' . | zstd -1 -q | sha256sum"
"$agent" key generate --out "$work/key" 2>/dev/null
export LIFEBOAT_KEY_FILE="$work/key" RUST_LOG=warn
fresh_repo='rm -rf "$work/repo" && "$agent" repo init --repo "file://$work/repo" >/dev/null && warm_free_memory'
median_of 3 backup1 "$fresh_repo" "$agent" files backup "$corpus" --repo "file://$work/repo" --cell bench --output json
cp "$work/backup1_try.out" "$work/b1.json"

log "== dedup"
measure backup2 "$agent" files backup "$corpus" --repo "file://$work/repo" --cell bench --output json
cp "$work/backup2.out" "$work/b2.json"
cp -a "$corpus" "$work/changed"
mapfile -t files < <(find "$work/changed" -type f -size +0 | sort)
changed=0
for ((i = 0; i < ${#files[@]}; i += 50)); do # every 50th file: 2 %
  f=${files[$i]}
  size=$(stat -c %s "$f")
  offset=$(( (size / 2) / 8192 * 8192 ))
  head -c 8192 /dev/urandom | dd of="$f" bs=8192 seek=$((offset / 8192)) conv=notrunc status=none
  changed=$((changed + 1))
done
measure backup3 "$agent" files backup "$work/changed" --repo "file://$work/repo" --cell bench --output json
cp "$work/backup3.out" "$work/b3.json"

log "== copy (median of 5 runs each, the three contenders' runs interleaved)"
# cp leaves its data in the page cache; Lifeboat makes every object durable
# before it counts as copied. The second baseline makes cp durable too.
# Every run copies into a new empty directory ($work/dst links to it): the
# old ones are removed at exit, not just before the next run (ext4 scans
# freshly deleted inodes when it allocates new ones, slowing whichever
# copy follows a deletion by a varying amount). Each try starts after a
# sync, so none pays for the writeback of the one before, and with the
# machine's free memory warm (see warm_free_memory), so none pays the host
# for first touching the pages its copy lands on.
# next_dst BASE: a new empty directory that BASE/dst links to.
dst_no=0
next_dst() {
  dst_no=$((dst_no + 1))
  mkdir "$1/dst-$dst_no" && ln -sfn "dst-$dst_no" "$1/dst" && warm_free_memory
}
# One untimed run of each first, so no timed run pays for what the
# preceding phases left the filesystem to do.
next_dst "$work" && cp -r "$work/repo/." "$work/dst/" && next_dst "$work" &&
  "$agent" repo copy "file://$work/repo" "file://$work/dst" >/dev/null && sync
median_alternating 5 \
  cp_r 'next_dst "$work"' "cp -r '$work/repo/.' '$work/dst/'" \
  cp_r_sync 'next_dst "$work"' "cp -r '$work/repo/.' '$work/dst/' && sync" \
  copy 'next_dst "$work"' "'$agent' repo copy 'file://$work/repo' 'file://$work/dst'"

# The same contest between two repositories in memory (tmpfs), where a
# durable write waits for no disk: what the copy itself costs against
# `cp -r`, apart from the disk's time to store what it copied.
mem_copy="not measured: /dev/shm cannot take 3 GiB"
if [[ $(shm_avail_kb) -ge $((3 << 20)) ]]; then
  log "== copy in memory (tmpfs; median of 5 runs each, interleaved)"
  mem=$(mktemp -d /dev/shm/lifeboat-bench.XXXXXX)
  trap 'rm -rf "$work" "$mem"' EXIT
  cp -r "$work/repo" "$mem/repo"
  median_alternating 5 \
    cp_r_mem 'next_dst "$mem"' "cp -r '$mem/repo/.' '$mem/dst/'" \
    copy_mem 'next_dst "$mem"' "'$agent' repo copy 'file://$mem/repo' 'file://$mem/dst'"
  mem_copy="${copy_mem_s} s | ${cp_r_mem_s} s (cp -r) | $(ratio "$cp_r_mem_s" "$copy_mem_s")"
  rm -rf "$mem"
fi

log "== restore (for the record: peak memory)"
measure restore "$agent" files restore latest "$work/restored" --repo "file://$work/dst" --cell bench

b1_bytes=$(jget "$work/b1.json" '["totals"]["bytes"]')
b1_stored=$(jget "$work/b1.json" '["totals"]["new_stored_bytes"]')
b2_new=$(jget "$work/b2.json" '["totals"]["new_stored_bytes"]')
b3_new=$(jget "$work/b3.json" '["totals"]["new_stored_bytes"]')
max_kb=$(printf '%s\n' "$backup1_kb" "$backup2_kb" "$backup3_kb" "$copy_kb" "$restore_kb" | sort -n | tail -1)

cat <<EOF2

Lifeboat repository benchmark ($(date -u +%FT%TZ), $(nproc) cores, corpus pgbench scale $scale: $((corpus_bytes >> 20)) MiB in $corpus_files files)
| measure | Lifeboat | baseline | ratio / value | bar |
|---|---|---|---|---|
| ingest (throughput ratio, baseline time / Lifeboat time) | ${backup1_s} s | ${baseline_s} s (tar, zstd -1, sha256sum) | $(ratio "$baseline_s" "$backup1_s") | >= 0.8 |
| stored after compression (first backup) | $((b1_stored >> 20)) MiB of $((b1_bytes >> 20)) MiB | | $(pct "$b1_stored" "$b1_bytes") % | |
| second backup, unchanged corpus: new bytes | $b2_new B | | $(pct "$b2_new" "$b1_bytes") % | < 1 % |
| after changing $changed of ${#files[@]} files (2 %): new bytes | $((b3_new >> 20)) MiB | | $(pct "$b3_new" "$b1_bytes") % | < 10 % |
| repo copy (throughput ratio, cp -r time / copy time) | ${copy_s} s | ${cp_r_s} s (cp -r) | $(ratio "$cp_r_s" "$copy_s") | >= 0.8 |
| repo copy vs a durable copy (cp -r; sync) | ${copy_s} s | ${cp_r_sync_s} s (cp -r; sync) | $(ratio "$cp_r_sync_s" "$copy_s") | |
| repo copy in memory (tmpfs: no disk to wait for; cp -r time / copy time) | ${mem_copy} | |
| disk during a copy: busy time, write requests | ${copy_busy_ms} ms, ${copy_wreq} | cp -r: ${cp_r_busy_ms} ms, ${cp_r_wreq}; cp -r; sync: ${cp_r_sync_busy_ms} ms, ${cp_r_sync_wreq} | | |
| peak RSS: backup 1 / 2 / 3, copy, restore | $((backup1_kb / 1024)) / $((backup2_kb / 1024)) / $((backup3_kb / 1024)), $((copy_kb / 1024)), $((restore_kb / 1024)) MiB | | max $((max_kb / 1024)) MiB | < 300 MiB |
EOF2
