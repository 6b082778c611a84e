# Shell functions the bench/ scripts share: processes started and stopped by pid, free loopback
# ports, bounded waits, a Chat4All topology on free ports, and the lines that say on what machine,
# commit and disk a run was made. Sourced by bash scripts, not run.
#
# The sourcing script defines, before calling them: say and die (its messages), the associative
# array `pids` (label -> pid of everything it started), the bounds
# ready_s and stop_grace_s (seconds), and $repo, $chat4all and $workdir.

alive() {  # a zombie has exited: it only waits to be reaped
  local pid=$1 state
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# SIGTERM, then SIGKILL after the grace; children it leaves behind (chat4all up's nodes, if it
# had to be killed) are stopped the same way, by their pids.
stop_pid() {
  local pid=$1 waited=0 children child
  children=$(pgrep -P "$pid" 2>/dev/null || true)
  if alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && ((waited < stop_grace_s * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if alive "$pid"; then
      say "pid $pid ignored SIGTERM for ${stop_grace_s}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  for child in $children; do
    alive "$child" && stop_pid "$child"
  done
  return 0
}

stop() {  # stop the processes registered under these labels
  local label
  for label in "$@"; do
    [[ -n ${pids[$label]:-} ]] || continue
    stop_pid "${pids[$label]}"
    unset "pids[$label]"
  done
}

# Runs a command in the background under `timeout` (so that traps act at once and the command
# can never outlive its budget), waits for it and returns its status.
bounded() {
  local budget_s=$1 status=0
  shift
  timeout --kill-after=5 "$budget_s" "$@" &
  pids[load]=$!
  wait "${pids[load]}" || status=$?
  unset 'pids[load]'
  return "$status"
}

listening() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Loopback ports not listening a moment ago and below Linux's ephemeral range. `free_port VAR`
# sets VAR in this shell: in a subshell, `$(free_port)`, it would forget the ports it handed out.
declare -A taken=()
free_port() {
  local -n chosen=$1
  local candidate tries
  for ((tries = 0; tries < 500; tries++)); do
    candidate=$((20000 + RANDOM % 12000))
    [[ -z ${taken[$candidate]:-} ]] || continue
    taken[$candidate]=1
    listening "$candidate" || { chosen=$candidate; return 0; }
  done
  die "no free loopback port found"
}

# Waits (bounded) until the command succeeds; the process under `label` must stay alive.
wait_until() {
  local what=$1 label=$2 log=$3 deadline=$(($(date +%s) + ready_s))
  shift 3
  until "$@" >/dev/null 2>&1; do
    if ! alive "${pids[$label]}"; then
      tail -n 20 "$log" >&2 || true
      die "$what exited before it was ready (log above: $log)"
    fi
    if (($(date +%s) >= deadline)); then
      tail -n 20 "$log" >&2 || true
      die "$what was not ready after ${ready_s}s (log above: $log)"
    fi
    sleep 0.2
  done
}

# 1234567 -> 1,234,567 (every number in a text)
thousands() { sed -E ':a;s/([0-9])([0-9]{3})($|[^0-9])/\1,\2\3/;ta' <<<"$1"; }

# Chat4All: `chat4all up` on a copy of topology/local.yaml (data in the temporary directory, free
# loopback ports, the per-token rate limit raised because the generator sends with one token,
# no outside channels: see bench/README.md), loaded through the public HTTP API by
# chat4all-http-load. With `keep_connector` set to 1 the connector node stays, serving no channel:
# it delivers webhooks and so drains the partitions' webhook event outboxes, as in the default
# topology.

write_topology() {
  local rf=$1 file=$2 data=$3 tls_dir=${4:-} ports=() i https_port
  for ((i = 0; i < 14; i++)); do free_port "ports[i]"; done
  # Text edits, so that everything else is exactly the default topology's: the replication
  # factor, data_dir, the two rate-limit lines; the `channels:` section, the router's channels
  # endpoint and the connector node go; every endpoint port is replaced by a free one.
  awk -v rf="$rf" -v data="$data" -v ports="${ports[*]}" -v keep_connector="${keep_connector:-0}" '
    BEGIN { n = split(ports, port, " "); next_port = 1 }
    /^[a-z_]+:/ { section = $1 }
    section == "channels:" { next }
    section == "nodes:" && /^  - name:/ { skip = ($3 ~ /^connector/) && !keep_connector }
    skip { next }
    section == "nodes:" && /^    channels: \[/ { next }
    /^  replication_factor:/ { print "  replication_factor: " rf; next }
    /^  data_dir:/ { print "  data_dir: " data; next }
    /^  token_requests_per_s:/ { print "  token_requests_per_s: 1000000  # one token sends everything"; next }
    /^  token_burst:/ { print "  token_burst: 1000000"; next }
    /endpoints:/ {
      sub(/channels: [0-9]+, /, "")
      line = ""
      while (match($0, /[a-z]+: [0-9]+/)) {
        item = substr($0, RSTART, RLENGTH)
        sub(/[0-9]+$/, port[next_port++], item)
        line = line substr($0, 1, RSTART - 1) item
        $0 = substr($0, RSTART + RLENGTH)
      }
      print line $0
      next
    }
    { print }
  ' "$repo/topology/local.yaml" >"$file"
  if [[ -n $tls_dir ]]; then  # the frontend serves HTTPS too, with the run's certificate
    free_port https_port
    sed -i -e "/role: frontend/,/endpoints:/ s/endpoints: {/endpoints: {https: $https_port, /" \
      -e "s|^nodes:|tls:\n  certificate_file: $tls_dir/frontend.crt\n  private_key_file: $tls_dir/frontend.key\nnodes:|" \
      "$file"
  fi
  "$chat4all" check "$file" >/dev/null || die "chat4all check refused the generated $file"
}

machine_line() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  printf '%s cores (nproc), %s, %s memory, temporary data on %s' "$(nproc)" "${cpu:-unknown CPU}" \
    "$mem" "$(df -T "$workdir" | awk 'NR == 2 {print $2}')"
}

# What else the machine is doing shows in every figure: the load average, and what one small
# synchronous write costs on the disk that holds the data right now (100 x 4 KiB, O_DSYNC).
conditions_line() {
  local load seconds sync_ms
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  seconds=$(timeout 60 dd if=/dev/zero of="$workdir/sync-probe" bs=4k count=100 oflag=dsync 2>&1 |
    awk '/copied/ {print $(NF - 3)}') || true
  rm -f "$workdir/sync-probe"
  sync_ms=$(awk -v s="${seconds:-0}" 'BEGIN {printf "%.2f", s * 10}')
  printf 'load average %s at the start; one 4 KiB O_DSYNC write on the data disk %s ms (mean of 100)' \
    "$load" "$sync_ms"
}

commit_line() {
  local commit dirty=""
  commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]] || dirty=" (dirty: uncommitted changes)"
  printf '%s%s' "$commit" "$dirty"
}
