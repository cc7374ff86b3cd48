# Kafka helpers shared by the benchmark scripts (sourced after bench-lib.sh,
# with the broker started and $brokers and $work set).

topics() { bash infra/services.sh kafka-topics --bootstrap-server "$brokers" "$@" >/dev/null; }

# The same producer settings Lifeboat's restore uses, with a 64 MiB bound on
# queued records (Lifeboat's own is 32 MiB): producing a 2 GiB file on a fresh broker, kcat
# took 4.7 and 7.6 s with its default 1 GiB queue, 3.8 and 4.9 s with the
# bound. (Inside bench-kafka.sh kcat is slower still: see docs/benchmarks.md.)
producer_opts=(-X enable.idempotence=true -X acks=all -X compression.type=lz4 -X linger.ms=20 -X batch.size=1000000
  -X queue.buffering.max.kbytes=65536)

# kafka_corpus FILE RECORDS: RECORDS values of 1 KiB (random base64, about
# 77 % stored after zstd), one per line (kcat -P splits stdin at newlines;
# a named file would be one message).
kafka_corpus() {
  python3 - "$1" "$2" <<'EOF'
import base64, os, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    for _ in range(n // 1024):
        block = base64.b64encode(os.urandom(768 * 1024))  # 1024 values of 1024 characters
        f.write(b"".join(block[i:i + 1024] + b"\n" for i in range(0, len(block), 1024)))
EOF
}

# deletions_done: wait until the broker has removed the files of deleted
# topics. A deletion running in the background (unlinking segments,
# dropping their page cache) slowed whichever run it landed in, kcat's and
# Lifeboat's alike, by up to 2x. The broker infra/services.sh starts removes
# them 1 s after a deletion.
deletions_done() {
  local i
  for ((i = 0; i < 240; i++)); do
    compgen -G "$LB_RUN_DIR/kafka/data/*-delete" >/dev/null || return 0
    sleep 0.5
  done
  log "warning: the broker still holds files of deleted topics after 120 s"
}
