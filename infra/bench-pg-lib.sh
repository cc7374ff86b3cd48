# Postgres helpers shared by the benchmark scripts (sourced after
# bench-lib.sh, with $work set): a cluster archiving into a Lifeboat
# repository and a pgBackRest stanza at once (one archive_command), both
# with zstd level 1, encryption and 2 processes.

# pg_bench_cleanup: every cluster under $work and its object store stopped,
# $work removed.
pg_bench_cleanup() {
  for d in "$work"/*/; do bash infra/pg-cluster.sh stop "$d" >/dev/null 2>&1 || true; done
  [[ ! -s $work/store.pids ]] || xargs kill <"$work/store.pids" 2>/dev/null || true
  rm -rf "$work"
}

# pg_bench_setup: Postgres and pgBackRest installed; a clean $work with the
# agent ($agent), Lifeboat's repository ($lb_repo), pgBackRest's
# configuration and its wrapper ($pgbr, run as the cluster's owner); $bindir.
pg_bench_setup() {
  bash infra/services.sh install postgres >&2
  need pgbackrest pgbackrest
  bindir=$(pg_config --bindir)
  pg_bench_cleanup
  agent_for_postgres
  lb_repo="file://$work/lb-repo"
  RUST_LOG=warn "$agent" repo init --repo "$lb_repo" --key-file "$work/key" >/dev/null
  mkdir -p "$work/pgbr-repo" "$work/pgbr-log" "$work/pgbr-spool"
  cat >"$work/pgbackrest.conf" <<EOF2
[global]
repo1-path=$work/pgbr-repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=lifeboat-bench-not-a-secret
repo1-retention-full=9999999
compress-type=zst
compress-level=1
process-max=2
log-path=$work/pgbr-log
spool-path=$work/pgbr-spool
lock-path=$work/pgbr-spool
log-level-console=warn
log-level-file=off
start-fast=y
archive-async=n

[bench]
pg1-path=PGDATA
pg1-port=PGPORT
pg1-host-user=postgres
pg1-socket-path=SOCKET
EOF2
  # pgBackRest runs as the cluster's owner, as it must.
  printf '#!/bin/sh\nexec runuser -u postgres -- pgbackrest --config=%s/pgbackrest.conf --stanza=bench "$@"\n' "$work" >"$work/bin/pgbr"
  chmod 755 "$work/bin/pgbr"
  pgbr="$work/bin/pgbr"
  chown -R postgres:postgres "$work"
}

# pg_bench_location file|s3|azure: after pg_bench_setup, before cluster:
# for s3 or azure, both repositories move into a private object store of
# this script (moto or Azurite) over HTTPS: pgBackRest's S3 and Azure
# repositories need TLS. stunnel serves it, with a self-signed certificate
# both tools verify (moto's own TLS fails pgBackRest's uploads with
# "unexpected eof"; pgBackRest 2.45 matches a certificate's DNS names
# only, so it is told localhost). pgBackRest as its user guide advises for
# object stores: small files bundled (repo1-bundle), WAL fetched ahead of
# replay (asynchronous archive-get; archive-push stays synchronous). One
# bucket or container, Lifeboat's under lb/, pgBackRest's under /pgbr. The
# store's credentials and CA go into the environment every process of the
# benchmark (Postgres' archive and restore commands too) inherits.
pg_bench_location() {
  [[ $1 != file ]] || return 0
  local port plain tls=$work/tls repo
  read -r port plain <<<"$(lb_free_ports 2)"
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -addext basicConstraints=critical,CA:FALSE \
    -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
  chown -R postgres: "$tls"
  export LIFEBOAT_CA_FILE=$tls/cert.pem
  case $1 in
    s3)
      bash infra/services.sh install s3 >&2
      export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
      setsid "${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}/venv/bin/moto_server" -H 127.0.0.1 -p "$plain" >"$work/store.log" 2>&1 &
      lb_repo="s3://lifeboat-bench/lb?endpoint=https://127.0.0.1:$port"
      repo=(repo1-type=s3 repo1-s3-bucket=lifeboat-bench repo1-s3-endpoint=localhost repo1-s3-region=us-east-1
        repo1-s3-key=testing repo1-s3-key-secret=testing repo1-s3-uri-style=path)
      ;;
    azure)
      eval "$(bash infra/services.sh azurite-env "$port")"
      setsid bash infra/services.sh azurite "$work/azurite" "$plain" >"$work/store.log" 2>&1 &
      lb_repo="az://lifeboat-bench/lb?endpoint=https://127.0.0.1:$port/$AZURE_STORAGE_ACCOUNT"
      repo=(repo1-type=azure repo1-azure-container=lifeboat-bench "repo1-azure-account=$AZURE_STORAGE_ACCOUNT"
        "repo1-azure-key=$AZURE_STORAGE_KEY" repo1-azure-uri-style=path)
      ;;
    *) lb_die "a location is file, s3 or azure, not $1" ;;
  esac
  echo $! >"$work/store.pids"
  need stunnel4 stunnel4
  printf '%s\n' "foreground = yes" "pid =" "[store]" "accept = 127.0.0.1:$port" "connect = 127.0.0.1:$plain" \
    "cert = $tls/cert.pem" "key = $tls/key.pem" >"$tls/stunnel.conf"
  setsid stunnel4 "$tls/stunnel.conf" >"$work/stunnel.log" 2>&1 &
  echo $! >>"$work/store.pids"
  for _ in $(seq 120); do lb_port_open "$plain" && lb_port_open "$port" && break; sleep 0.5; done
  lb_port_open "$plain" || lb_die "the $1 server did not listen on $plain: $(tail -5 "$work/store.log")"
  lb_port_open "$port" || lb_die "stunnel did not listen on $port: $(tail -5 "$work/stunnel.log")"
  RUST_LOG=warn "$agent" repo init --repo "$lb_repo" --key-file "$work/key" >/dev/null
  printf '%s\n' repo1-path=/pgbr "${repo[@]}" repo1-storage-host=localhost "repo1-storage-port=$port" \
    "repo1-storage-ca-file=$tls/cert.pem" repo1-bundle=y >"$work/pgbr-repo.conf"
  sed -i -e "/^repo1-path=/r $work/pgbr-repo.conf" -e '/^repo1-path=/d' "$work/pgbackrest.conf"
  printf '\n[global:archive-get]\narchive-async=y\n' >>"$work/pgbackrest.conf"
}

# cluster NAME SCALE: a cluster archiving into both repositories, pgbench-initialised.
cluster() {
  local name=$1 s=$2 port dir
  dir="$work/$name"
  port=$(bash infra/pg-cluster.sh free-port)
  bash infra/pg-cluster.sh create "$dir" "$port" \
    "archive_mode = on" \
    "archive_command = '$agent wal-push %p --repo \"$lb_repo\" --cell bench --key-file $work/key && pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p'" \
    "max_wal_size = 4GB" "checkpoint_timeout = 30min" >/dev/null
  sed -i "s|PGDATA|$dir/data|; s|PGPORT|$port|; s|SOCKET|$dir/socket|" "$work/pgbackrest.conf"
  bash infra/pg-cluster.sh start "$dir" >&2
  # (|| lb_die: this runs in a command substitution, where errexit is off.)
  "$pgbr" stanza-create >&2 || lb_die "pgbackrest stanza-create failed"
  log "== pgbench -i -s $s"
  "$bindir/pgbench" -i -q -s "$s" -h 127.0.0.1 -p "$port" -U postgres postgres 2>/dev/null
  "$bindir/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -c checkpoint postgres
  echo "$port"
}
psql_at() { "$bindir/psql" -qAtX -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
# switch_wait PORT: switch WAL and wait until archived (both archives: one
# command), for up to 10 minutes.
switch_wait() {
  wait_archived "$(psql_at "$1" "select pg_walfile_name(pg_switch_wal())")" 1200 psql_at "$1"
}
# restore_and_replay NAME PORT CMD...: run CMD (a restore into $work/NAME/data), start, wait for promotion.
restore_and_replay() {
  local name=$1 port=$2
  shift 2
  "$@" >/dev/null
  start_and_promote "$name" "$port"
}
# start_and_promote NAME PORT: start the restored cluster $work/NAME and wait
# until it has replayed its WAL and promoted (accepts writes).
start_and_promote() {
  local i
  # (pg_ctl may give up waiting while a long recovery goes on: the poll decides.)
  bash infra/pg-cluster.sh start "$work/$1" "$2" >/dev/null 2>&1 || true
  for ((i = 0; i < 18000; i++)); do # an hour
    [[ $(psql_at "$2" "select pg_is_in_recovery()" 2>/dev/null) == f ]] && return 0
    sleep 0.2
  done
  lb_die "the restored cluster $work/$1 did not promote within an hour"
}

