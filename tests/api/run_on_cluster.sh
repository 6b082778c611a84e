#!/usr/bin/env bash
# Starts the local topology on free loopback ports in a temporary directory,
# runs one of the Node API tests (contract.mjs, stream.mjs) against it with
# the dev tenant's admin client, and stops every node it started, by pid,
# whatever happens.
#   tests/api/run_on_cluster.sh <chat4all binary> <script.mjs>
set -euo pipefail
binary="$1"
script="$2"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
runner_pid=""
cleanup() {
  if [[ -n "$runner_pid" ]]; then
    kill "$runner_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$runner_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$runner_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# One free port per port of the local topology.
ports=$(grep -oE '\b(8080|7100|7110|9100|720[1-3]|730[1-3]|740[1-3]|920[1-3]|8400|9400|9600)\b' "$root/topology/local.yaml" |
  sort -u)
count=$(echo "$ports" | wc -l)
free=$(node -e '
  const net = require("net"); const n = Number(process.argv[1]); const servers = [];
  let left = n;
  for (let i = 0; i < n; i++) { const s = net.createServer(); servers.push(s);
    s.listen(0, "127.0.0.1", () => { if (--left === 0) {
      console.log(servers.map(x => x.address().port).join(" ")); servers.forEach(x => x.close()); } }); }' "$count")
sed_script=""
set -- $free
for port in $ports; do sed_script+="s/\\b$port\\b/$1/g;"; shift; done
# A second tenant, "other", whose admin client has the dev admin's secret: the contract test
# checks that neither can see or detect anything of the other.
dev_secret_hash=$(grep -m1 -oE 'secret_hash: "[^"]+"' "$root/topology/local.yaml")
sed -e "$sed_script" -e "s#data_dir: .*#data_dir: $work/data#" \
  -e "/^tenants:/a\\  - id: other\\n    admin_clients:\\n      - client_id: other-admin\\n        $dev_secret_hash" \
  "$root/topology/local.yaml" > "$work/topology.yaml"
http_port=$(grep -oE 'http: [0-9]+' "$work/topology.yaml" | head -1 | grep -oE '[0-9]+')

"$binary" up "$work/topology.yaml" > "$work/cluster.log" 2>&1 &
runner_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$http_port/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done
# Leaders are elected within about a second of the start.
sleep 1.5
status=0
node "$here/$script" --base-url "http://127.0.0.1:$http_port" --tenant dev \
  --admin-client-id dev-admin --admin-client-secret chat4all-dev --other-tenant other \
  --other-admin-client-id other-admin --other-admin-client-secret chat4all-dev 2>&1 |
  tee "$work/test.log" ||
  status=$?
if [[ $status -ne 0 ]]; then
  echo "--- warnings and errors of the cluster log (last 30)"
  grep -vE '"level":"(info|debug)"' "$work/cluster.log" | tail -n 30 || true
  # Again, last: CI shows only the end of a failing test's output.
  echo "--- what failed"
  grep -E '^(FAIL|      |stream test stopped|contract test stopped|stopped after)' "$work/test.log" | tail -n 40 || true
fi
exit $status
