# Helpers shared by the benchmark scripts (sourced; needs $work set).
# Each measurement lands in shell variables named after it.

LB_TAG=bench
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { printf '%s\n' "$*" >&2; }

# need COMMAND PACKAGE: install the Debian package when the command is missing.
need() { command -v "$1" >/dev/null || lb_apt_install "$2"; }
# measure and timed below need these.
need /usr/bin/time time
need bc bc

# measure NAME CMD...: wall seconds, peak RSS (KiB) and CPU seconds (user +
# system) of CMD into ${NAME}_s / ${NAME}_kb / ${NAME}_cpu; its stdout is
# kept in $work/NAME.out.
measure() {
  local name=$1 s kb user sys
  shift
  if ! /usr/bin/time -f '%e %M %U %S' "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    cat "$work/$name.err" >&2
    return 1
  fi
  read -r s kb user sys < <(tail -1 "$work/$name.err")
  printf -v "${name}_s" '%s' "$s"
  printf -v "${name}_kb" '%s' "$kb"
  printf -v "${name}_cpu" '%.2f' "$(echo "$user + $sys" | bc)"
  log "$(printf '%-16s %8.2f s  %6d MiB peak  %6.2f s CPU' "$name" "$s" "$((kb / 1024))" "$(eval echo "\$${name}_cpu")")"
}

# timed NAME CMD...: wall seconds of CMD (a shell function too) into ${NAME}_s.
timed() {
  local name=$1 t0
  shift
  t0=$(date +%s.%N)
  "$@"
  printf -v "${name}_s" '%.2f' "$(echo "$(date +%s.%N) - $t0" | bc)"
  log "$(printf '%-16s %8.2f s' "$name" "$(eval echo "\$${name}_s")")"
}

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
pct() { python3 -c "print(f'{100 * $1 / $2:.2f}')"; }
# jget FILE '["a"]["b"]': a field of a JSON file.
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d" + sys.argv[2]))' "$1" "$2"; }

# median_of N NAME SETUP CMD...: run SETUP (e.g. removing a destination) then
# CMD, N times; the median wall time into ${NAME}_s, the largest RSS into ${NAME}_kb.
median_of() {
  local n=$1 name=$2 setup=$3 i times=() kb=0 k
  shift 3
  for ((i = 0; i < n; i++)); do
    eval "$setup"
    sync
    measure "${name}_try" "$@"
    times+=("$(eval echo "\$${name}_try_s")")
    k=$(eval echo "\$${name}_try_kb")
    ((k > kb)) && kb=$k
  done
  set_median "$name" "$kb" "${times[@]}"
}

# disk_counters: "write-requests busy-ms" so far of the block device that
# holds $work (its /sys/class/block/DEV/stat: fields 5 and 10), or "0 0"
# where that is no block device (tmpfs, overlay). Counts every process's I/O.
disk_counters() {
  local dev
  dev=$(findmnt -no SOURCE -T "$work" 2>/dev/null || true)
  if [[ -n $dev && -r /sys/class/block/${dev##*/}/stat ]]; then
    awk '{print $5, $10}' "/sys/class/block/${dev##*/}/stat"
  else
    echo "0 0"
  fi
}

# median_alternating N NAME SETUP CMD [NAME SETUP CMD]...: median_of for
# several contenders with their runs interleaved (A, B, A, B, ...), so that
# a slow spell of the machine lands on all alike. The CMDs are run by bash -c.
# Also the medians of the CPU seconds into ${NAME}_cpu, and of the disk's
# write requests and busy time (see disk_counters) during each CMD into
# ${NAME}_wreq and ${NAME}_busy_ms.
median_alternating() {
  local n=$1 i c t k count w0 b0 w1 b1
  shift
  local -a name=() setup=() cmd=() kb=() times=() cpu=() wreq=() busy=()
  while (($#)); do
    name+=("$1") setup+=("$2") cmd+=("$3") kb+=(0) times+=("") cpu+=("") wreq+=("") busy+=("")
    shift 3
  done
  count=${#name[@]}
  for ((i = 0; i < n; i++)); do
    for ((c = 0; c < count; c++)); do
      eval "${setup[c]}"
      sync
      read -r w0 b0 < <(disk_counters)
      measure "${name[c]}_try" bash -c "${cmd[c]}"
      read -r w1 b1 < <(disk_counters)
      t=$(eval echo "\$${name[c]}_try_s")
      k=$(eval echo "\$${name[c]}_try_kb")
      ((k > kb[c])) && kb[c]=$k
      times[c]+=" $t"
      cpu[c]+=" $(eval echo "\$${name[c]}_try_cpu")"
      wreq[c]+=" $((w1 - w0))"
      busy[c]+=" $((b1 - b0))"
    done
  done
  for ((c = 0; c < count; c++)); do
    # shellcheck disable=SC2086 # the times are words
    set_median "${name[c]}" "${kb[c]}" ${times[c]}
    # shellcheck disable=SC2086
    printf -v "${name[c]}_cpu" '%s' "$(middle ${cpu[c]})"
    # shellcheck disable=SC2086
    printf -v "${name[c]}_wreq" '%s' "$(middle ${wreq[c]})"
    # shellcheck disable=SC2086
    printf -v "${name[c]}_busy_ms" '%s' "$(middle ${busy[c]})"
  done
}

# warm_free_memory: write and free 1 GiB of tmpfs (/dev/shm), so that the
# next run's page-cache writes land on guest pages the host has backed. On
# a VM with free page reporting (virtio-balloon), memory the guest freed
# seconds ago goes back to the host and the first write to each such page
# faults on the host: here a `cp -r` of the 162 MiB benchmark repository
# took 0.46 to 0.56 s cold and 0.09 to 0.13 s after this (2026-11-28).
# Skipped (once noted) where /dev/shm cannot take 1 GiB, e.g. a container's
# default 64 MiB.
warm_free_memory() {
  if [[ $(shm_avail_kb) -lt $((3 << 19)) ]]; then
    [[ -n ${warm_skipped:-} ]] || log "warm_free_memory: /dev/shm cannot take 1 GiB; copies run unwarmed"
    warm_skipped=1
    return 0
  fi
  head -c 1G /dev/zero >/dev/shm/lifeboat-bench-warm || true
  rm -f /dev/shm/lifeboat-bench-warm
}

# shm_avail_kb: KiB free in /dev/shm (0 where it is missing or not writable).
shm_avail_kb() {
  local avail=0
  [[ -w /dev/shm ]] && avail=$(df -k --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
  echo "${avail:-0}"
}

# round_medians NAME: over rounds 1..$runs, the median of ${NAME}_I_s into
# ${NAME}_s (logged) and of ${NAME}_I_cpu into ${NAME}_cpu, the largest
# ${NAME}_I_kb into ${NAME}_kb (a figure a round lacks counts as 0).
round_medians() {
  local name=$1 i v times=() cpu=() kb=0
  for ((i = 1; i <= runs; i++)); do
    v="${name}_${i}_s" && times+=("${!v}")
    v="${name}_${i}_cpu" && cpu+=("${!v:-0}")
    v="${name}_${i}_kb" && ((${!v:-0} > kb)) && kb=${!v}
  done
  set_median "$name" "$kb" "${times[@]}"
  printf -v "${name}_cpu" '%s' "$(middle "${cpu[@]}")"
}

# wait_archived SEG TRIES PSQL...: poll every 0.5 s, at most TRIES times,
# until WAL segment SEG is archived; PSQL... runs a query given as its last
# argument (e.g. `psql -c`). Not by last_archived_wal alone: that can be an
# older segment's .backup file, archived after its successor.
wait_archived() {
  local seg=$1 tries=$2 i
  shift 2
  for ((i = 0; i < tries; i++)); do
    [[ $("$@" "select exists(select from pg_ls_archive_statusdir() where name = '$seg.done') or left(last_archived_wal, 24) > '$seg' from pg_stat_archiver") == t ]] && return 0
    sleep 0.5
  done
  lb_die "WAL segment $seg was not archived within $((tries / 2)) s"
}

# middle NUMBER...: the median (the lower middle one of an even count).
middle() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }

# set_median NAME KB TIME...: the median of the TIMEs into ${NAME}_s, KB into ${NAME}_kb.
set_median() {
  local name=$1 kb=$2
  shift 2
  printf -v "${name}_s" '%s' "$(middle "$@")"
  printf -v "${name}_kb" '%s' "$kb"
  log "$(printf '%-16s median %.2f s of %d runs (%s)' "$name" "$(eval echo "\$${name}_s")" "$#" "$*")"
}

# agent_for_postgres: the release agent copied to $work/bin (where the
# postgres user can run it as archive and restore command) into $agent, and
# a repository key at $work/key that user can read.
agent_for_postgres() {
  mkdir -p "$work/bin"
  chmod 755 "$work" "$work/bin"
  agent="$work/bin/lifeboat-agent"
  cp "$CARGO_TARGET_DIR/release/lifeboat-agent" "$agent"
  "$agent" key generate --out "$work/key" 2>/dev/null
  # Mode 0600 (the agent refuses a key others may read), owned by postgres: its archive and restore commands read it (root too).
  chmod 600 "$work/key"
  chown postgres: "$work/key"
}
