# shellcheck shell=bash
# shellcheck disable=SC2034 # variables are used by the scripts sourcing this
# Shared helpers for infra/services.sh and infra/pg-cluster.sh.
# Sourced, never run. Owns: the cache and run-dir locations, logging,
# free-port selection, apt fallbacks and finding PostgreSQL's binaries.

LB_INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LB_REPO_DIR=$(dirname "$LB_INFRA_DIR")
# Downloads (jars, virtualenv, node_modules) survive clones of the repo here.
LB_CACHE=${LIFEBOAT_CACHE:-${HOME:-/root}/.cache/lifeboat}
# Pid, log, env files and service data of this checkout live here.
LB_RUN_DIR=${LIFEBOAT_RUN_DIR:-$LB_REPO_DIR/.lifeboat-run}

# All progress goes to stderr: stdout is kept for output meant for eval.
lb_log() { printf '[%s] %s\n' "${LB_TAG:-infra}" "$*" >&2; }
lb_die() {
  lb_log "error: $*"
  exit 1
}

# lb_free_ports N: N distinct free TCP ports on 127.0.0.1, space separated.
# All N sockets are held open together so the kernel never hands out one twice.
lb_free_ports() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# lb_port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
lb_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# lb_pg_bindir: print the folder holding PostgreSQL 15's initdb/pg_ctl/postgres.
# `pg_config --bindir` first (as DESIGN.md says), Debian's fixed path second,
# since pg_config (libpq-dev) may be missing or belong to another major.
lb_pg_bindir() {
  local d=""
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
  fi
  if [[ -n $d && -x $d/initdb ]]; then
    printf '%s\n' "$d"
    return 0
  fi
  d=/usr/lib/postgresql/15/bin
  if [[ -x $d/initdb ]]; then
    printf '%s\n' "$d"
    return 0
  fi
  return 1
}

# lb_apt_install PKG...: non-interactive apt-get install (update once per run).
_LB_APT_UPDATED=""
lb_apt_install() {
  [[ $EUID -eq 0 ]] || lb_die "need root to apt-get install $*"
  if [[ -z $_LB_APT_UPDATED ]]; then
    lb_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    _LB_APT_UPDATED=1
  fi
  lb_log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

# lb_need_cmd CMD PKG...: install the Debian packages PKG... when CMD is missing.
lb_need_cmd() {
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  lb_log "$cmd not found"
  lb_apt_install "$@"
  command -v "$cmd" >/dev/null 2>&1 || lb_die "$cmd still missing after installing $*"
}
