#!/usr/bin/env bash
# Lifeboat's local services (DESIGN.md, "Real components, locally"):
# installs, starts, stops and describes Kafka (single-node KRaft), moto (S3)
# and Azurite (Azure Blob) on free loopback ports, and makes sure the
# PostgreSQL 15 binaries and kcat are present. Postgres clusters themselves
# are created by tests with infra/pg-cluster.sh; `stop` stops those too.
set -euo pipefail

LB_TAG=services
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- versions (Kafka's lives in infra/kafka/pom.xml) -----------------------
MOTO_VERSION=5.2.5
# Newest 3.x that runs on Node 20: azurite 3.36+ require Node >= 21.
AZURITE_VERSION=3.35.0
KAFKA_POM=$LB_INFRA_DIR/kafka/pom.xml
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")
[[ -n $KAFKA_VERSION ]] || lb_die "no <kafka.version> in $KAFKA_POM"

KAFKA_HOME=$LB_CACHE/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
VENV=$LB_CACHE/venv
DEPLOY_TOOLS=$LB_CACHE/deploy-tools
KUBERNETES_VALIDATE_VERSION=1.37.0
AZURITE_DIR=$LB_CACHE/azurite
# Azurite's fixed development account and its well-known public key.
AZURE_ACCOUNT=devstoreaccount1
AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

ALL_SERVICES=(postgres kcat faketime chromium deploy s3 azure kafka)
DAEMONS=(s3 azure kafka)

usage() {
  cat <<EOF
Usage: infra/services.sh COMMAND [SERVICE...]

Services: postgres kcat faketime chromium deploy s3 azure kafka (none given = all of them).
chromium (headless, to render reports in tests) and faketime (to skew a
process's clock in the lock tests) are installed, never started; so is
deploy: the checkers of infra/deploy (promtool from Debian's prometheus
package, systemd-analyze, kubernetes-validate from PyPI).

Commands:
  install [SERVICE...]  install what is missing (cached in $LB_CACHE)
  start   [SERVICE...]  install if needed, then start s3/azure/kafka on free
                        127.0.0.1 ports (no-op for running, healthy ones);
                        prints the env exports on stdout:
                          eval "\$(infra/services.sh start s3 azure)"
  env                   print 'export KEY=VALUE' lines for running services
  stop    [SERVICE...]  stop services (TERM, then KILL after ~15 s) and,
                        without arguments or with 'postgres', every cluster
                        started by infra/pg-cluster.sh
  status                one line per service
  azurite DIR PORT [ARG...]
                        run an Azurite of the caller's own in the foreground
                        (data in DIR; installed when missing; ARGs passed on,
                        e.g. --cert C --key K --oauth basic), for a caller
                        that stops it on purpose (Azure lost); its exports:
  azurite-env PORT        eval "\$(infra/services.sh azurite-env PORT)"
  kafka-topics ARGS...  run Kafka's TopicCommand (kafka-topics.sh) on the
                        cached jars, e.g.
                          infra/services.sh kafka-topics --bootstrap-server \\
                            "\$LIFEBOAT_TEST_KAFKA_BROKERS" --create --topic t \\
                            --partitions 1 --replication-factor 1

Environment: LIFEBOAT_CACHE (default ~/.cache/lifeboat),
             LIFEBOAT_RUN_DIR (default <repo>/.lifeboat-run; pid/log/env files)
EOF
}

# parse_services [NAME...]: validate names into SERVICES (default: all).
SERVICES=()
parse_services() {
  local s a ok
  SERVICES=()
  if [[ $# -eq 0 ]]; then
    SERVICES=("${ALL_SERVICES[@]}")
    return
  fi
  for s in "$@"; do
    ok=""
    for a in "${ALL_SERVICES[@]}"; do [[ $s == "$a" ]] && ok=1; done
    if [[ -z $ok ]]; then
      usage >&2
      lb_die "unknown service '$s'"
    fi
    SERVICES+=("$s")
  done
}

# ============================================================================
# install: one function per service, each a no-op on a cache hit.
# ============================================================================

install_postgres() {
  local bindir
  if bindir=$(lb_pg_bindir); then
    lb_log "postgres: present ($bindir)"
    return
  fi
  lb_log "postgres: installing postgresql-15"
  # postgresql-common first, with its automatic "main" cluster turned off:
  # tests make private clusters, a system one on port 5432 would only be in the way.
  lb_apt_install postgresql-common
  sed -i 's/^#\?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  lb_apt_install postgresql-15
  bindir=$(lb_pg_bindir) || lb_die "postgres: initdb still missing after install"
  lb_log "postgres: installed ($bindir)"
}

install_chromium() {
  lb_need_cmd chromium chromium
  lb_log "chromium: present ($(command -v chromium))"
}

install_faketime() {
  lb_need_cmd faketime faketime
  lb_log "faketime: present ($(command -v faketime))"
}

# promtool out of Debian's prometheus package (extracted, never installed:
# no server, no postinst), systemd-analyze, and kubernetes-validate (the
# Kubernetes schemas, offline) in a virtualenv of its own.
install_deploy() {
  local deb tmp
  if [[ ! -x $DEPLOY_TOOLS/usr/bin/promtool ]]; then
    lb_log "deploy: extracting promtool from Debian's prometheus package"
    tmp=$(mktemp -d)
    [[ -n $_LB_APT_UPDATED ]] || { DEBIAN_FRONTEND=noninteractive apt-get update -q >&2; _LB_APT_UPDATED=1; }
    (cd "$tmp" && apt-get download prometheus >&2)
    deb=$(ls "$tmp"/prometheus_*.deb)
    rm -rf "$DEPLOY_TOOLS.tmp" && dpkg-deb -x "$deb" "$DEPLOY_TOOLS.tmp"
    rm -rf "$DEPLOY_TOOLS" && mv "$DEPLOY_TOOLS.tmp" "$DEPLOY_TOOLS"
    rm -rf "$tmp"
  fi
  lb_need_cmd systemd-analyze systemd
  if [[ ! -x $DEPLOY_TOOLS/venv/bin/kubernetes-validate ]]; then
    lb_need_cmd python3 python3 python3-venv
    lb_log "deploy: kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $DEPLOY_TOOLS/venv"
    python3 -m venv "$DEPLOY_TOOLS/venv" >&2
    "$DEPLOY_TOOLS/venv/bin/python" -m pip install -q --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  fi
  lb_log "deploy: present ($DEPLOY_TOOLS)"
}

install_kcat() {
  lb_need_cmd kcat kcat
  lb_log "kcat: present ($(command -v kcat))"
}

# Kafka jars from Maven Central into $KAFKA_LIBS. The marker holds the pom's
# sha256, so editing the pom re-resolves; an interrupted copy never counts.
install_kafka() {
  local want marker=$KAFKA_HOME/.complete tmp=$KAFKA_HOME/libs.tmp
  want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  if [[ -f $marker && $(<"$marker") == "$want" && -d $KAFKA_LIBS ]]; then
    lb_log "kafka: jars cached ($KAFKA_LIBS)"
    return
  fi
  lb_need_cmd java openjdk-17-jre-headless
  lb_need_cmd mvn maven
  lb_log "kafka: resolving kafka_2.13 $KAFKA_VERSION with Maven (first time only)"
  rm -rf "$tmp" "$marker"
  mkdir -p "$KAFKA_HOME"
  # Own local repository under the cache: deleting the cache resets everything.
  if ! mvn -B -q -f "$KAFKA_POM" -Dmaven.repo.local="$LB_CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 40 "$KAFKA_HOME/mvn.log" >&2
    lb_die "kafka: mvn failed, see $KAFKA_HOME/mvn.log"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || lb_die "kafka: jars missing after mvn"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  printf '%s\n' "$want" >"$marker"
  lb_log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

s3_installed() {
  [[ -x $VENV/bin/moto_server ]] &&
    "$VENV/bin/python" -c "import sys, moto, flask, flask_cors
sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null
}

# moto[server] in its own virtualenv; rebuilt when missing, broken or another version.
install_s3() {
  if s3_installed; then
    lb_log "s3: moto $MOTO_VERSION cached ($VENV)"
    return
  fi
  lb_need_cmd python3 python3 python3-venv
  lb_log "s3: creating $VENV with moto[server]==$MOTO_VERSION"
  rm -rf "$VENV"
  mkdir -p "$LB_CACHE"
  if ! python3 -m venv "$VENV" >&2; then
    # Debian's python3 keeps venv/ensurepip in a separate package.
    rm -rf "$VENV"
    lb_apt_install python3-venv
    python3 -m venv "$VENV" >&2
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" >&2
  s3_installed || lb_die "s3: moto not importable after install"
}

azure_installed() {
  [[ -x $AZURITE_DIR/node_modules/.bin/azurite-blob && -f $AZURITE_DIR/.complete &&
    $(<"$AZURITE_DIR/.complete") == "$AZURITE_VERSION" ]]
}

install_azure() {
  if azure_installed; then
    lb_log "azure: azurite $AZURITE_VERSION cached ($AZURITE_DIR)"
    return
  fi
  lb_need_cmd node nodejs
  lb_need_cmd npm npm
  lb_log "azure: npm install azurite@$AZURITE_VERSION"
  rm -f "$AZURITE_DIR/.complete"
  mkdir -p "$AZURITE_DIR"
  npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" >&2
  [[ -x $AZURITE_DIR/node_modules/.bin/azurite-blob ]] || lb_die "azure: azurite-blob missing after npm"
  printf '%s\n' "$AZURITE_VERSION" >"$AZURITE_DIR/.complete"
}

cmd_install() {
  local s
  mkdir -p "$LB_CACHE"
  # One installer at a time per cache (parallel test runs may all call start).
  exec 8>"$LB_CACHE/.install.lock"
  flock 8
  for s in "$@"; do "install_$s"; done
  # The Kafka readiness probe uses kcat.
  if [[ " $* " == *" kafka "* && " $* " != *" kcat "* ]]; then install_kcat; fi
  exec 8>&-
}

# ============================================================================
# daemon bookkeeping: <run>/<svc>.pid .port .env .log (+ <run>/<svc>/ data)
# ============================================================================

svc_file() { printf '%s/%s.%s\n' "$LB_RUN_DIR" "$1" "$2"; }

# What the service's command line must contain (guards against reused pids).
svc_pattern() {
  case $1 in
    kafka) echo 'kafka\.Kafka' ;;
    s3) echo 'moto_server' ;;
    azure) echo 'azurite-blob' ;;
  esac
}

# svc_pid SVC: print the pid of the service's live process, or fail.
svc_pid() {
  local f pid
  f=$(svc_file "$1" pid)
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(svc_pattern "$1")" || return 1
  printf '%s\n' "$pid"
}

svc_port() {
  local f
  f=$(svc_file "$1" port)
  [[ -s $f ]] && cat "$f"
}

# probe SVC PORT: the service answers on PORT.
probe() {
  local code
  case $1 in
    kafka)
      lb_port_open "$2" && timeout 15 kcat -L -b "127.0.0.1:$2" -m 5 >/dev/null 2>&1
      ;;
    s3)
      # Any HTTP answer will do; /moto-api/data.json would dump every stored
      # object and time out while the server holds GiBs.
      code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$2/" || true)
      [[ -n $code && $code != 000 ]]
      ;;
    azure)
      # Unsigned request: Azurite answers 403, which is enough to know it is up.
      code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$2/$AZURE_ACCOUNT?comp=list" || true)
      [[ -n $code && $code != 000 ]]
      ;;
  esac
}

svc_healthy() {
  local port i
  svc_pid "$1" >/dev/null && port=$(svc_port "$1") && [[ -s $(svc_file "$1" env) ]] || return 1
  # A live process that is busy (a test streaming GiBs through it) may answer
  # slowly: give it a few chances before it is declared unhealthy and restarted.
  for i in 1 2 3 4; do
    probe "$1" "$port" && return 0
    svc_pid "$1" >/dev/null || return 1
    sleep "$i"
  done
  return 1
}

# launch SVC CMD...: run CMD detached in its own session (outlives this shell,
# no terminal, so no SIGHUP); the process writes its own pid before exec'ing.
# The run-dir lock (fd 9) is closed so the daemon does not hold it forever.
launch() {
  local svc=$1 pidf log i
  shift
  pidf=$(svc_file "$svc" pid)
  log=$(svc_file "$svc" log)
  rm -f "$pidf"
  # shellcheck disable=SC2016 # $$/$0/$@ belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$log" 2>&1 9>&- &
  for i in $(seq 100); do
    [[ -s $pidf ]] && return 0
    sleep 0.05
  done
  lb_die "$svc: process did not start within $((i / 20)) s, see $log"
}

# ---- per-service launchers: pick ports, prepare state, launch -------------

launch_s3() {
  local port
  port=$(lb_free_ports 1)
  : >"$(svc_file s3 log)"
  printf '%s\n' "$port" >"$(svc_file s3 port)"
  launch s3 "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
}

launch_azure() {
  local port dir=$LB_RUN_DIR/azurite
  port=$(lb_free_ports 1)
  rm -rf "$dir"
  mkdir -p "$dir"
  : >"$(svc_file azure log)"
  printf '%s\n' "$port" >"$(svc_file azure port)"
  launch azure bash "$LB_INFRA_DIR/services.sh" azurite "$dir" "$port"
}

# JVM options shared by the broker and the tools (what kafka-run-class.sh sets).
kafka_java() {
  java -Djava.awt.headless=true -cp "$KAFKA_LIBS/*" "$@"
}

# Single-node KRaft broker+controller; a fresh cluster (new id, empty log dirs)
# on every start, like kafka-storage.sh format + kafka-server-start.sh.
launch_kafka() {
  local port cport dir=$LB_RUN_DIR/kafka log cluster_id
  log=$(svc_file kafka log)
  read -r port cport <<<"$(lb_free_ports 2)"
  [[ -n $port && -n $cport ]] || lb_die "kafka: no free ports"
  rm -rf "$dir"
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# Written by infra/services.sh for one run; regenerated on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
# A deleted topic's files go after 1 s, not the default minute: tests and
# benchmarks delete topics, and a minute later the deletion (unlinking and
# dropping the page cache of every segment) would land in whatever runs then.
# (The broker's name for it; file.delete.delay.ms, the topic-level name, is
# ignored here, which left the minute in place until 2026-12-07.)
log.segment.delete.delay.ms=1000
EOF
  # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
  # Never one starting with "-", which the tool would take for an option
  # (Kafka's own Uuid.randomUuid() skips those too): 1 start in 64 failed.
  cluster_id=$(python3 -c '
import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(i)')
  : >"$log"
  kafka_java -Dlog4j.configuration="file:$LB_INFRA_DIR/kafka/tools-log4j.properties" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >>"$log" 2>&1 ||
    lb_die "kafka: StorageTool format failed, see $log"
  printf '%s\n' "$port" >"$(svc_file kafka port)"
  launch kafka java -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$LB_INFRA_DIR/kafka/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
}

# azure_env PORT: the KEY=VALUE lines of an Azurite on PORT.
azure_env() {
  printf '%s\n' "LIFEBOAT_TEST_AZURE_ENDPOINT=http://127.0.0.1:$1/$AZURE_ACCOUNT" \
    "AZURE_STORAGE_ACCOUNT=$AZURE_ACCOUNT" "AZURE_STORAGE_KEY=$AZURE_KEY"
}

# write_env SVC: the KEY=VALUE lines that `env` turns into exports.
write_env() {
  local port
  port=$(svc_port "$1")
  case $1 in
    s3)
      printf '%s\n' "LIFEBOAT_TEST_S3_ENDPOINT=http://127.0.0.1:$port" \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
      ;;
    azure)
      azure_env "$port"
      ;;
    kafka)
      printf '%s\n' "LIFEBOAT_TEST_KAFKA_BROKERS=127.0.0.1:$port" \
        "LIFEBOAT_KAFKA_LIBS=$KAFKA_LIBS"
      ;;
  esac >"$(svc_file "$1" env)"
}

# wait_ready SVC: 0 = answering (env written), 1 = process died, 2 = timeout.
wait_ready() {
  local svc=$1 port deadline
  port=$(svc_port "$svc")
  deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    svc_pid "$svc" >/dev/null || return 1
    if probe "$svc" "$port"; then
      write_env "$svc"
      return 0
    fi
    sleep 0.3
  done
  return 2
}

group_alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

# stop_svcs SVC...: TERM each service's process group (all at once), KILL
# what is left after ~15 s, then forget the services' pid/port/env files.
stop_svcs() {
  local svc pid pids=() alive
  for svc in "$@"; do
    if pid=$(svc_pid "$svc"); then
      lb_log "$svc: stopping pid $pid"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for _ in $(seq 150); do
    alive=""
    for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
    [[ -n $alive ]] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if group_alive "$pid"; then
      lb_log "pid $pid still alive after 15 s, killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for svc in "$@"; do
    rm -f "$(svc_file "$svc" pid)" "$(svc_file "$svc" env)" "$(svc_file "$svc" port)"
  done
}

lock_run_dir() {
  mkdir -p "$LB_RUN_DIR"
  exec 9>"$LB_RUN_DIR/.lock"
  flock 9
}

# ============================================================================
# commands
# ============================================================================

cmd_env() {
  local svc key val bindir
  for svc in "${DAEMONS[@]}"; do
    svc_pid "$svc" >/dev/null || continue
    [[ -s $(svc_file "$svc" env) ]] || continue
    while IFS='=' read -r key val; do
      printf 'export %s=%q\n' "$key" "$val"
    done <"$(svc_file "$svc" env)"
  done
  if bindir=$(lb_pg_bindir); then
    printf 'export LIFEBOAT_PG_BINDIR=%q\n' "$bindir"
  fi
}

cmd_start() {
  local svc want=() launched=() tries rc
  parse_services "$@"
  want=("${SERVICES[@]}")
  cmd_install "${want[@]}"
  lb_need_cmd curl curl
  lock_run_dir
  for svc in "${want[@]}"; do
    case $svc in s3 | azure | kafka) ;; *) continue ;; esac
    if svc_healthy "$svc"; then
      lb_log "$svc: already running on port $(svc_port "$svc")"
      continue
    fi
    stop_svcs "$svc" # clear a stale or unhealthy instance
    lb_log "$svc: starting"
    "launch_$svc"
    launched+=("$svc")
  done
  # Started together, awaited one by one; a port lost to a race gets a retry.
  for svc in "${launched[@]}"; do
    tries=1
    while :; do
      rc=0
      wait_ready "$svc" || rc=$?
      ((rc == 0)) && break
      lb_log "$svc: not ready (rc=$rc); last log lines:"
      tail -n 20 "$(svc_file "$svc" log)" >&2 || true
      stop_svcs "$svc"
      ((tries < 3)) || lb_die "$svc: failed to start, see $(svc_file "$svc" log)"
      tries=$((tries + 1))
      lb_log "$svc: retrying ($tries/3)"
      "launch_$svc"
    done
    lb_log "$svc: ready on 127.0.0.1:$(svc_port "$svc")"
  done
  cmd_env
}

cmd_stop() {
  local svc want=()
  parse_services "$@"
  want=("${SERVICES[@]}")
  lock_run_dir
  local daemons=()
  for svc in "${want[@]}"; do
    case $svc in s3 | azure | kafka) daemons+=("$svc") ;; esac
  done
  stop_svcs "${daemons[@]}"
  if [[ " ${want[*]} " == *" postgres "* ]]; then
    "$LB_INFRA_DIR/pg-cluster.sh" stop-all
  fi
}

cmd_status() {
  local svc pid bindir n=0 reg=$LB_RUN_DIR/pg-clusters
  for svc in "${DAEMONS[@]}"; do
    if pid=$(svc_pid "$svc"); then
      printf '%-8s running  %s (pid %s)\n' "$svc" \
        "$(sed -n '1s/^[A-Z_0-9]*=//p' "$(svc_file "$svc" env)" 2>/dev/null || echo "port $(svc_port "$svc")")" "$pid"
    else
      printf '%-8s stopped\n' "$svc"
    fi
  done
  if bindir=$(lb_pg_bindir); then
    [[ -s $reg ]] && n=$(wc -l <"$reg")
    printf '%-8s installed %s (%s registered cluster(s))\n' postgres "$bindir" "$n"
  else
    printf '%-8s not installed\n' postgres
  fi
  for tool in kcat faketime chromium; do
    if command -v "$tool" >/dev/null 2>&1; then
      printf '%-8s installed %s\n' "$tool" "$(command -v "$tool")"
    else
      printf '%-8s not installed\n' "$tool"
    fi
  done
}

cmd_azurite() {
  [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || lb_die "usage: azurite DIR PORT [AZURITE-ARG...]"
  azure_installed || install_azure
  mkdir -p "$1"
  local dir=$1 port=$2
  shift 2
  exec "$AZURITE_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir" \
    --disableTelemetry --skipApiVersionCheck --loose --silent "$@"
}

cmd_azurite_env() {
  [[ $# -eq 1 && $1 =~ ^[0-9]+$ ]] || lb_die "usage: azurite-env PORT"
  azure_env "$1" | while IFS='=' read -r key val; do printf 'export %s=%q\n' "$key" "$val"; done
}

cmd_kafka_topics() {
  [[ -f $KAFKA_HOME/.complete ]] || cmd_install kafka
  kafka_java -Dlog4j.configuration="file:$LB_INFRA_DIR/kafka/tools-log4j.properties" \
    org.apache.kafka.tools.TopicCommand "$@"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    install)
      parse_services "$@"
      cmd_install "${SERVICES[@]}"
      ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    env) cmd_env ;;
    status) cmd_status ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    azurite) cmd_azurite "$@" ;;
    azurite-env) cmd_azurite_env "$@" ;;
    -h | --help | help)
      usage
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
