#!/usr/bin/env python3
"""Where a profiled agent's CPU time went, by phase of the Kafka data path.

Reads `perf report --no-children --sort comm,dso,sym -g none` output on
stdin (each line: share, thread, library, symbol) and prints each phase's
share of the agent's samples. Phases are told apart by thread and leaf
symbol, not by call chains: release builds keep no frame pointers, so
perf's chains stop at the leaf. The threads say what a leaf serves: a
snapshot's readers are `kafka-read` (fetching records, hashing their
content), its chunkers and sealers `tokio-rt-worker`, librdkafka's own
`rdk:*`.

    perf report -i perf.data --no-children --sort comm,dso,sym -g none \
      | python3 infra/perf-phases.py snapshot|restore
"""

import re
import sys
from collections import Counter

# (phase, thread pattern, symbol pattern), the first match wins.
RULES = {
    "snapshot": [
        ("hash: record content (SHA-256)", r"kafka-read", r"sha2|sha256"),
        ("hash: chunk ids (HMAC-SHA-256)", r".", r"sha2|sha256"),
        ("compress (zstd)", r".", r"ZSTD_|HUF_|HIST_|FSE_"),
        ("encrypt (ChaCha20-Poly1305)", r".", r"chacha|poly1305|ring_core"),
        ("chunk (FastCDC)", r".", r"fastcdc"),
        ("store: writing chunk files (kernel)", r"tokio", r"\[k\]"),
        ("fetch: librdkafka's threads (network, lz4, parsing)", r"^rdk:", r"."),
        ("fetch: taking records from librdkafka", r"kafka-read", r"rd_kafka|rdkafka|LZ4|clock_gettime|\[k\]"),
        ("decode: records into blocks", r"kafka-read", r"."),
        ("copies (memmove) and allocation", r".", r"memmove|memcpy|memset|malloc|_int_free|cfree|unlink_chunk"),
    ],
    "restore": [
        ("check: chunk ids (HMAC-SHA-256)", r".", r"sha2|sha256"),
        ("decrypt (ChaCha20-Poly1305)", r".", r"chacha|poly1305|ring_core"),
        ("decompress (zstd)", r".", r"ZSTD_|HUF_|FSE_"),
        # zstd's Huffman decoder is assembly (huf_decompress_amd64.S) whose
        # local symbols perf leaves unnamed; addr2line names them.
        ("decompress (zstd)", r"tokio", r"\[\.\]\s+0x"),
        ("produce: librdkafka's threads (lz4, requests, network)", r"^rdk:", r"."),
        ("produce: handing records to librdkafka", r".", r"rd_kafka|rdkafka|clock_gettime"),
        ("decode: records out of chunks", r".", r"record::parse|Decoder|PartitionJob|PartitionReader"),
        ("read: chunk files (kernel)", r"tokio", r"\[k\]"),
        ("copies (memmove) and allocation", r".", r"memmove|memcpy|memset|malloc|_int_free|cfree|unlink_chunk"),
    ],
}

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+(?: \S+)?)\s+(\S+)\s+(\[[.k]\]\s+.*)$")


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "snapshot"
    rules = [(phase, re.compile(thread), re.compile(symbol)) for phase, thread, symbol in RULES[kind]]
    shares = Counter()
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        share, thread, _library, symbol = float(m[1]), m[2], m[3], m[4]
        phase = next((p for p, t, s in rules if t.search(thread) and s.search(symbol)), "other")
        shares[phase] += share
    total = sum(shares.values())
    if not total:
        sys.exit("no samples on stdin")
    print(f"| phase ({kind}) | share of the agent's CPU samples |")
    print("|---|---|")
    for phase, share in shares.most_common():
        print(f"| {phase} | {100 * share / total:.1f} % |")


if __name__ == "__main__":
    main()
