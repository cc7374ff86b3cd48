#!/usr/bin/env bash
# End-to-end check of infra/services.sh and infra/pg-cluster.sh: starts every
# service, talks to each one with an independent client (kcat, curl with
# SigV4, a Shared Key request, psql), and with --stop stops everything again
# and checks that no process is left. Usage: infra/smoke-test.sh [--stop]
set -euo pipefail

INFRA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
passed=0
failed=0
check() { # check NAME CMD...: run CMD, count the result
  local name=$1
  shift
  if "$@" >/tmp/lifeboat-smoke.$$ 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name" >&2
  else
    failed=$((failed + 1))
    echo "FAIL $name" >&2
    sed 's/^/     /' /tmp/lifeboat-smoke.$$ >&2
  fi
  rm -f /tmp/lifeboat-smoke.$$
}

eval "$("$INFRA/services.sh" start)"

# ---- Kafka: metadata, then a topic (auto-create is off) and one message ----
topic=smoke-$$
check "kafka metadata (kcat -L)" kcat -L -b "$LIFEBOAT_TEST_KAFKA_BROKERS" -m 10
# Topics are created with Kafka's own TopicCommand on the cached jars
# (what kafka-topics.sh runs); the wrapper is `services.sh kafka-topics`.
check "kafka create topic" "$INFRA/services.sh" kafka-topics \
  --bootstrap-server "$LIFEBOAT_TEST_KAFKA_BROKERS" --create --topic "$topic" \
  --partitions 1 --replication-factor 1
kafka_produce() { echo hello-lifeboat | kcat -P -b "$LIFEBOAT_TEST_KAFKA_BROKERS" -t "$topic" -k k1; }
kafka_consume() {
  [[ $(kcat -C -b "$LIFEBOAT_TEST_KAFKA_BROKERS" -t "$topic" -o beginning -c 1 -e -f '%k=%s') == k1=hello-lifeboat ]]
}
check "kafka produce" kafka_produce
check "kafka consume" kafka_consume

# ---- S3 (moto): signed requests, as the real clients send them ------------
s3() { curl -fsS --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
bucket=smoke-$$
check "s3 create bucket" s3 -X PUT "$LIFEBOAT_TEST_S3_ENDPOINT/$bucket"
# -T (upload a file), not --data-binary: curl's form content type makes moto drop the body.
s3_put() { echo hello-s3 | s3 -T - "$LIFEBOAT_TEST_S3_ENDPOINT/$bucket/obj"; }
s3_get() { [[ $(s3 "$LIFEBOAT_TEST_S3_ENDPOINT/$bucket/obj") == hello-s3 ]]; }
check "s3 put object" s3_put
check "s3 get object" s3_get

# ---- Azure Blob (Azurite): Shared Key with the well-known account key -----
check "azure container+blob (Shared Key)" python3 - "smoke$$" <<'PY'
import base64, email.utils, hashlib, hmac, os, sys, urllib.parse, urllib.request
ep = os.environ["LIFEBOAT_TEST_AZURE_ENDPOINT"]
acct = os.environ["AZURE_STORAGE_ACCOUNT"]
key = base64.b64decode(os.environ["AZURE_STORAGE_KEY"])
def req(method, path, query, body=b""):
    url = urllib.parse.urlparse(ep + path + ("?" + urllib.parse.urlencode(query) if query else ""))
    ct = "application/octet-stream" if method == "PUT" else ""
    hdr = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    if method == "PUT" and path.count("/") == 2:
        hdr["x-ms-blob-type"] = "BlockBlob"
    sts = "\n".join([method, "", "", str(len(body)) if body else "", "", ct] + [""] * 6) + "\n"
    sts += "".join(f"{k}:{v}\n" for k, v in sorted(hdr.items()))
    sts += f"/{acct}{url.path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
    hdr["Authorization"] = f"SharedKey {acct}:{sig}"
    if ct:
        hdr["Content-Type"] = ct
    r = urllib.request.Request(url.geturl(), data=body if method == "PUT" else None,
                               method=method, headers=hdr)
    with urllib.request.urlopen(r) as resp:
        return resp.read()
c = sys.argv[1]
req("PUT", f"/{c}", {"restype": "container"})
req("PUT", f"/{c}/blob", {}, b"hello-azure")
assert req("GET", f"/{c}/blob", {}) == b"hello-azure"
PY

# ---- PostgreSQL: a private cluster, psql over TCP, fast stop --------------
pgdir=$(mktemp -d /tmp/lifeboat-smoke-pg.XXXXXX)
port=$("$INFRA/pg-cluster.sh" free-port)
check "pg create" "$INFRA/pg-cluster.sh" create "$pgdir/c" "$port"
check "pg start" "$INFRA/pg-cluster.sh" start "$pgdir/c"
pg_select() { [[ $("$LIFEBOAT_PG_BINDIR/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc 'select 1') == 1 ]]; }
check "pg select 1" pg_select
check "pg stop" "$INFRA/pg-cluster.sh" stop "$pgdir/c"
rm -rf "$pgdir"

# ---- optional: stop everything and make sure nothing is left --------------
if [[ ${1:-} == --stop ]]; then
  pids=$(cat "${LIFEBOAT_RUN_DIR:-$(dirname "$INFRA")/.lifeboat-run}"/*.pid 2>/dev/null || true)
  check "services stop" "$INFRA/services.sh" stop
  none_left() {
    local p
    for p in $pids; do ! kill -0 "$p" 2>/dev/null || return 1; done
  }
  check "no process left" none_left
fi

echo "smoke: $passed passed, $failed failed"
((failed == 0))
