#!/usr/bin/env bash
# The connector and the plain script (plain_sync.py) each sync N customers
# from a freshly seeded `connector sim`, in turn, ROUNDS times: the same
# simulator process kind, the same data, the same machine.
#   host-harness/bench/side-by-side.sh [N] [ROUNDS] [LATENCY_MS] [WRITES]
# LATENCY_MS: how long both simulators take to answer each API call.
# WRITES: composite (default: the connector writes as the script does,
# sObject Collections) or auto (the connector's own choice: Bulk API 2.0
# above salesforce_bulk_threshold).
# CONNECTOR (default target/release/connector) and CONNECTOR_COMPONENT are
# passed through; the script's Python packages go into a venv (VENV, default
# target/bench-venv) from requirements.txt.
set -euo pipefail
N=${1:-100000}
ROUNDS=${2:-3}
LATENCY_MS=${3:-0}
WRITES=${4:-composite}
case "$WRITES" in composite | auto) ;; *) echo "WRITES is composite or auto, not $WRITES" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
connector=${CONNECTOR:-target/release/connector}
venv=${VENV:-target/bench-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi
work=$(mktemp -d)
sim_pid=
stop_sim() { if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; sim_pid=; fi; }
trap 'stop_sim; rm -rf "$work"' EXIT

# Starts a fresh simulator pair seeded with N customers; endpoints in $work/sim.json.
start_sim() {
  rm -rf "$work/sim"
  "$connector" sim --customers "$N" --contacts 0 --vendors 0 --ports 0,0 --latency-ms "$LATENCY_MS" --dir "$work/sim" --json >"$work/sim.json" &
  sim_pid=$!
  for _ in $(seq 1 600); do
    grep -q '"vendors"' "$work/sim.json" 2>/dev/null && return
    kill -0 "$sim_pid" 2>/dev/null || { echo "connector sim exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "connector sim did not start within 60 s" >&2
  exit 1
}

# One JSON line for a finished run: its own figures plus `process_seconds`,
# the whole process's wall time (interpreter or runtime start included).
report() {
  python3 - "$@" <<'PY'
import json, re, sys
path, started, ended, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), open(sys.argv[4]).read()
seconds = ended - started
if path == "plain-script":
    result = json.loads(out)
else:
    calls = re.search(r"NetSuite (\d+), Salesforce (\d+)", out)
    records = sum(int(n) for n in re.findall(r"created (\d+)", out))
    run_seconds = int(re.search(r"succeeded in (\d+) ms", out)[1]) / 1000
    result = {"path": path, "records": records, "seconds": run_seconds,
              "records_per_second": round(records / run_seconds),
              "salesforce_api_calls": int(calls[2]), "netsuite_requests": int(calls[1])}
result["process_seconds"] = round(seconds, 2)
result["records_per_process_second"] = round(result["records"] / seconds)
print(json.dumps(result))
PY
}

for round in $(seq 1 "$ROUNDS"); do
  start_sim
  started=$(date +%s.%N)
  status=0
  "$venv/bin/python" "$here/plain_sync.py" "$work/sim.json" >"$work/script.out" || status=$?
  ended=$(date +%s.%N)
  stop_sim
  # The script prints its line (with the first failures) before it exits 1 on a failed record.
  report plain-script "$started" "$ended" "$work/script.out"
  [ "$status" -eq 0 ] || exit "$status"

  start_sim
  if [ "$WRITES" = composite ]; then
    # Composite, as the script writes: raise the Bulk threshold above N.
    sed -i "s/^\[settings\]/[settings]\nsalesforce_bulk_threshold = $((N + 1))/" "$work/sim/connector.toml"
  fi
  started=$(date +%s.%N)
  "$connector" sync --config "$work/sim/connector.toml" >"$work/sync.out"
  ended=$(date +%s.%N)
  stop_sim
  report "connector-$WRITES" "$started" "$ended" "$work/sync.out"
done
