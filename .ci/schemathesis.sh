#!/usr/bin/env bash
# API fuzzing: schemathesis (PyPI, pinned) against the real `posedge` binary, driven by the
# OpenAPI document the daemon itself serves at /openapi.json.
#
#   1. a venv (target/venv-schemathesis, or $ST_VENV) with the pinned schemathesis;
#   2. the debug binary (target/debug/posedge, built by the README's test command; built here
#      if missing) serving on 127.0.0.1 with a config in a temp dir: register R1 and admin
#      tokens, a manager, Stripe at a closed port (payments are decided offline: approvals,
#      manager approvals, refusals) and a back office that refuses every document with 503
#      (documents fail, retry and go dead: retry and discard have rows to act on), fast probe
#      and backoff;
#   3. `st run` (.ci/schemathesis/schemathesis.toml, hooks.py) for the stateless phases
#      (examples, coverage, fuzzing) with at least $EXAMPLES cases per operation that takes
#      input, then $STATEFUL_ROUNDS runs of the stateful phase (sequences following the
#      document's links), every check on, each request bounded by a timeout; /healthz is
#      polled all along by a watcher;
#   4. afterwards: the daemon is alive and healthy, every sale and payment it acknowledged is in
#      its database, SIGTERM exits 0, `posedge audit verify` passes and the database passes
#      PRAGMA integrity_check.
#
# EXAMPLES (default 200) sets the cases per operation and STATEFUL_ROUNDS (default
# EXAMPLES/100, at least 3) the stateful rounds; SEED (default 20261124) seeds the generation,
# so a run sends the same requests again (up to the ids and times the daemon hands out, which
# the stateful phase follows). `EXAMPLES=2000 bash .ci/schemathesis.sh` is the longer run. Exits
# non-zero on any schemathesis failure or error, or any of the checks in 4.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${EXAMPLES:-200}
SEED=${SEED:-20261124}
STATEFUL_ROUNDS=${STATEFUL_ROUNDS:-$((EXAMPLES < 300 ? 3 : EXAMPLES / 100))}
VENV=${ST_VENV:-$PWD/target/venv-schemathesis}
BIN=${POSEDGE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/posedge}
PYTHON=${PYTHON:-python3}
HERE=$PWD/.ci/schemathesis

# schemathesis and everything it imports, pinned to versions seen working on Python 3.11.
PINS=(
  schemathesis==4.32.5
  anyio==4.16.0
  certifi==2026.10.19.post1
  charset_normalizer==3.5.2
  click==8.5.1
  graphql-core==3.3.2
  harfile==0.6.0
  hypothesis==6.170.17
  hypothesis-graphql==0.13.5
  idna==3.20
  iniconfig==2.3.1
  jsonschema-rs==0.60.3
  markdown-it-py==4.3.0
  MarkupSafe==3.0.4
  mdurl==0.1.2
  packaging==26.3
  pluggy==1.7.0
  Pygments==2.21.0
  pyrate-limiter==4.5.1
  pytest==9.2.0
  PyYAML==6.0.4
  requests==2.34.2
  rich==15.0.0
  sortedcontainers==2.4.0
  typing_extensions==4.16.0
  urllib3==2.8.0
  Werkzeug==3.1.9
)

started=$(date +%s)
echo "== schemathesis: venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  echo "+ $PYTHON -m venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "+ $VENV/bin/pip install schemathesis==4.32.5 (and its pinned dependencies)"
"$VENV/bin/pip" install --disable-pip-version-check --quiet "${PINS[@]}"
echo "schemathesis $("$VENV/bin/st" --version | awk '{print $NF}') on $("$VENV/bin/python" --version)"

if [ ! -x "$BIN" ]; then
  echo "+ cargo build --locked (no $BIN)"
  cargo build --locked
fi

work=$(mktemp -d)
daemon_pid=
watch_pid=
backoffice_pid=
cleanup() {
  [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null || true
  [ -n "$backoffice_pid" ] && kill "$backoffice_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
closed=$(free_port) # nothing listens here: Stripe is down, payments are decided offline
backoffice=$(free_port)
base="http://127.0.0.1:$port"

# A back office that answers the probe's GET but refuses every document with 503: NAXML
# documents are tried, fail, retry and go dead, so retry and discard have rows to act on.
"$PYTHON" - "$backoffice" <<'EOF' &
import http.server, sys
class Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Refusing).serve_forever()
EOF
backoffice_pid=$!

export ST_REGISTER_ID=R1 ST_CURRENCY=USD ST_MANAGER_ID=M1 ST_MANAGER_PIN=2468
export ST_REGISTER_TOKEN="st-register-$SEED" ST_ADMIN_TOKEN="st-admin-$SEED"
export ST_ACKED="$work/acknowledged.txt"
: >"$ST_ACKED"
cat >"$work/config.toml" <<EOF
[store]
timezone = "UTC"
location_id = "loc-schemathesis"
currency = "USD"

[server]
listen = "127.0.0.1:$port"
max_body_bytes = 65536
request_timeout = "10s"

[database]
path = "$work/posedge.db"

[[registers]]
id = "$ST_REGISTER_ID"
token_sha256 = "$("$BIN" hash-token "$ST_REGISTER_TOKEN")"

[[admins]]
id = "tech"
token_sha256 = "$("$BIN" hash-token "$ST_ADMIN_TOKEN")"

[[managers]]
id = "$ST_MANAGER_ID"
pin_hash = "$("$BIN" hash-pin "$ST_MANAGER_PIN")"

# Limits high enough that thousands of offline approvals still fit in a day; amounts
# between 100.00 and 500.00 need a manager, above 500.00 are refused.
[offline_payments]
max_transaction_amount = "500.00"
approval_required_over = "100.00"
max_daily_total = "100000000.00"
max_outstanding_total = "100000000.00"

[probe]
interval = "1s"
offline_interval = "500ms"
timeout = "500ms"
internet_targets = []

[outbox]
backoff_base = "50ms"
backoff_max = "500ms"
max_retries = 2
process_interval = "2s"

[stripe]
api_base = "http://127.0.0.1:$closed"
secret_key = "sk_test_schemathesis"
online_timeout = "1s"

[conexxus]
transport = "http"
url = "http://127.0.0.1:$backoffice/naxml"
timeout = "1s"
max_retries = 2

[backup]
directory = "$work/backups"
keep = 2
EOF
"$BIN" check-config --config "$work/config.toml"

echo "+ $BIN serve --config $work/config.toml"
"$BIN" serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
healthy=
for _ in $(seq 100); do
  if "$PYTHON" -c "import urllib.request as u; u.urlopen('$base/healthz', timeout=1)" 2>/dev/null; then
    healthy=1
    break
  fi
  sleep 0.1
done
if [ -z "$healthy" ]; then
  echo "posedge did not answer /healthz within 10 s:" >&2
  cat "$work/daemon.log" >&2
  exit 1
fi

# /healthz must answer 200 within 2 s all along; the watcher counts the times it did not.
"$PYTHON" - "$base/healthz" "$work/healthz.txt" <<'EOF' &
import sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
polls = bad = 0
slowest = 0.0
while True:
    t = time.monotonic()
    try:
        ok = urllib.request.urlopen(url, timeout=2).status == 200
    except Exception:
        ok = False
    slowest = max(slowest, time.monotonic() - t)
    polls += 1
    bad += not ok
    with open(out, "w") as f:
        f.write(f"{polls} {bad} {slowest:.3f}\n")
    time.sleep(0.5)
EOF
watch_pid=$!

export SCHEMATHESIS_HOOKS="$HERE/hooks.py"
# ST_ARGS: more options for every run, e.g. ST_ARGS=--continue-on-failure while exploring.
# shellcheck disable=SC2206
st=("$VENV/bin/st" --config-file "$HERE/schemathesis.toml" run "$base/openapi.json"
  --generation-database none ${ST_ARGS:-})
st_status=0
st_started=$(date +%s)

echo "== schemathesis, stateless: examples, coverage, fuzzing ($EXAMPLES per operation, seed $SEED)"
echo "+ ${st[*]} --phases examples,coverage,fuzzing --max-examples $EXAMPLES --seed $SEED"
"${st[@]}" --phases examples,coverage,fuzzing --max-examples "$EXAMPLES" --seed "$SEED" \
  --report ndjson --report-dir "$work/stateless" || st_status=$?

# Each stateful run ends after a few dozen scenarios whatever --max-examples says, so the
# stateful phase runs in rounds, each with its own seed (SEED+1, SEED+2, ...).
for round in $(seq "$STATEFUL_ROUNDS"); do
  echo "== schemathesis, stateful: round $round of $STATEFUL_ROUNDS (seed $((SEED + round)))"
  "${st[@]}" --phases stateful --max-examples "$EXAMPLES" --seed "$((SEED + round))" \
    --report ndjson --report-dir "$work/stateful-$round" || st_status=$?
done
st_seconds=$(($(date +%s) - st_started))

kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_pid=
read -r polls bad slowest <"$work/healthz.txt"
echo "== after the run ($st_seconds s of schemathesis)"
failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}
[ "$st_status" -eq 0 ] || fail "schemathesis failed (exit $st_status)"

# Cases sent per operation: every operation that takes input (parameters or a body) got at
# least $EXAMPLES; the others have one request to send and are listed with what they got.
"$PYTHON" - "$base/openapi.json" "$EXAMPLES" "$work" <<'EOF' || fail "an operation got fewer than $EXAMPLES cases"
import collections, glob, json, sys, urllib.request
doc = json.load(urllib.request.urlopen(sys.argv[1]))
need, work = int(sys.argv[2]), sys.argv[3]
counts = collections.defaultdict(collections.Counter)
for path in glob.glob(f"{work}/*/*.ndjson"):
    for line in open(path):
        event = json.loads(line).get("ScenarioFinished")
        for case in (event or {}).get("recorder", {}).get("cases", {}).values():
            v = case["value"]
            counts[(v["method"].lower(), v["path"])][event["phase"]] += 1
short = []
print(f"{'operation':44} {'examples':>8} {'coverage':>8} {'fuzzing':>8} {'stateful':>8}")
for path, item in doc["paths"].items():
    for method, op in item.items():
        c = counts[(method, path)]
        takes_input = bool(op.get("parameters") or op.get("requestBody"))
        stateless = c["examples"] + c["coverage"] + c["fuzzing"]
        mark = "" if takes_input else "  (no input)"
        if path == "/openapi.json":
            mark = "  (the document itself: loaded for each run, not fuzzed)"
        print(f"{method.upper() + ' ' + path:44} {c['examples']:8} {c['coverage']:8} {c['fuzzing']:8} {c['stateful']:8}{mark}")
        if takes_input and stateless < need:
            short.append(f"{method.upper()} {path}: {stateless}")
for s in short:
    print("fewer cases than asked:", s)
sys.exit(1 if short else 0)
EOF
echo "/healthz polled $polls times, $bad not 200 within 2 s, slowest ${slowest}s"
[ "$bad" -eq 0 ] || fail "/healthz did not answer 200 within 2 s $bad times"
if kill -0 "$daemon_pid" 2>/dev/null; then
  echo "daemon alive (pid $daemon_pid)"
else
  fail "the daemon died during the run"
fi

# Every acknowledged sale and payment is in the ledger.
"$PYTHON" - "$work/posedge.db" "$ST_ACKED" <<'EOF' || fail "acknowledged rows missing from the database"
import sqlite3, sys
db, acked = sys.argv[1], sys.argv[2]
ids = sorted(set(open(acked).read().split()))
conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
missing = [i for i in ids
           if not conn.execute("SELECT 1 FROM sales WHERE id = ?1 UNION ALL "
                               "SELECT 1 FROM payments WHERE id = ?1", (i,)).fetchone()]
sales = sum(i.startswith("sale_") for i in ids)
print(f"acknowledged: {sales} sales, {len(ids) - sales} payments; missing from the database: {len(missing)}")
for i in missing[:20]:
    print("  missing", i)
sys.exit(1 if missing or not ids else 0)
EOF

kill -TERM "$daemon_pid"
daemon_status=0
wait "$daemon_pid" || daemon_status=$?
daemon_pid=
[ "$daemon_status" -eq 0 ] || fail "posedge serve exited $daemon_status on SIGTERM"
"$BIN" audit verify --config "$work/config.toml" || fail "posedge audit verify"
integrity=$("$PYTHON" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])" "$work/posedge.db")
echo "PRAGMA integrity_check: $integrity"
[ "$integrity" = ok ] || fail "integrity_check: $integrity"
if grep -Eq 'panicked|ERROR' "$work/daemon.log"; then
  grep -E 'panicked|ERROR' "$work/daemon.log" | head -20
  fail "the daemon logged a panic or an error"
fi

echo "schemathesis step: $(($(date +%s) - started)) s in all"
if [ "$failed" -ne 0 ]; then
  echo "daemon log (last 50 lines):"
  tail -n 50 "$work/daemon.log"
  exit 1
fi
