#!/usr/bin/env bash
# Soak: 10 minutes of mixed register traffic against the real `posedge serve` (release), with
# both upstreams going away every minute, while the daemon's RSS, open descriptors, WAL size
# and outbox depth are sampled. They must level off, not climb.
#
#   bash bench/soak.sh                          # 600 s, 8 registers, one action/s each
#   SOAK_SECONDS=120 bash bench/soak.sh          # a short look
#   REGISTERS=16 PACE_MS=500 bash bench/soak.sh
#
# Upstreams: a fake Stripe (bench/fakestripe.rs, the test fake as a process, keeping Stripe's
# idempotency rules) and a fake Conexxus back office (bench/backoffice.rs). Each minute from
# t=20 s: Stripe goes dark (odd minutes: connections accepted, never answered) or refuses
# connections (even minutes), and the back office is stopped (port closed); 20 s later both
# come back. Card payments in an outage are decided offline and forwarded afterwards;
# NAXML journals wait in the outbox.
#
# Registers (bench/soak.rs drive): three actions in four a cash sale, one a card payment and
# the sale it pays; every tenth also reads the banner and the sale back. Any transport
# error, 4xx or 5xx is counted as an error.
#
# Afterwards both upstreams stay up until the outbox is empty, then: every sale's journal
# reached the back office (its idempotency key is in the back office's log), and the fake Stripe holds exactly one
# PaymentIntent per card payment posedge captured (no double charge).
#
# Output: per-sample lines on stderr, target/soak.csv (t_s,rss_kib,fds,wal_bytes,
# outbox_depth), and a JSON summary with the per-minute maxima and the verdict on stdout.
# Exit 1 if a series climbs, a register saw an error, or a delivery check fails.
set -euo pipefail

SOAK_SECONDS="${SOAK_SECONDS:-600}"
REGISTERS="${REGISTERS:-8}"
PACE_MS="${PACE_MS:-1000}"
SAMPLE_EVERY_S="${SAMPLE_EVERY_S:-5}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

echo "== building (release)" >&2
cargo build --release --bin posedge --example soak --example fakestripe --example backoffice >&2
BIN="$REPO/target/release/posedge"
SOAK="$REPO/target/release/examples/soak"
FAKESTRIPE="$REPO/target/release/examples/fakestripe"
BACKOFFICE="$REPO/target/release/examples/backoffice"

WORK="$(mktemp -d -p "$REPO/target" soak.XXXXXX)"
DAEMON_PID="" FAKE_PID="" BO_PID="" DRIVE_PID="" SAMPLE_PID=""

stop_pid() {
    local pid="$1"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [[ -n "$pid" ]]; then wait "$pid" 2>/dev/null || true; fi
}
cleanup() {
    for p in "$DRIVE_PID" "$SAMPLE_PID" "$DAEMON_PID" "$FAKE_PID" "$BO_PID"; do stop_pid "$p"; done
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
get_json() {
    python3 -c 'import json,sys,urllib.request; print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1], timeout=5))))' "$1"
}

# The fake Stripe: one process for the whole run (it keeps the PaymentIntents).
"$FAKESTRIPE" serve --mode answer >"$WORK/stripe.out" 2>"$WORK/stripe.err" &
FAKE_PID=$!
for _ in $(seq 1 100); do grep -q '"listening"' "$WORK/stripe.out" 2>/dev/null && break; sleep 0.05; done
STRIPE_URL="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["base_url"])' "$WORK/stripe.out")"

# The back office: restarted after each outage on the same port, one log per life.
BO_PORT="$(free_port)"
BO_LIFE=0
start_backoffice() {
    BO_LIFE=$((BO_LIFE + 1))
    "$BACKOFFICE" serve --listen "127.0.0.1:$BO_PORT" --latency-ms 2 \
        --log "$WORK/backoffice-$BO_LIFE.log" >"$WORK/backoffice-$BO_LIFE.out" 2>&1 &
    BO_PID=$!
}
start_backoffice

TOKEN="soak-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
mkdir -p "$WORK/data"
cat >"$WORK/config.toml" <<EOF
[store]
timezone = "UTC"

[server]
listen = "127.0.0.1:$PORT"

[database]
path = "$WORK/data/posedge.db"

[[registers]]
id = "R1"
token_sha256 = "$("$BIN" hash-token "$TOKEN")"

[probe]
interval = "2s"
offline_interval = "1s"
timeout = "1s"
internet_targets = []

[outbox]
backoff_base = "200ms"
backoff_max = "5s"
process_interval = "10s"

[stripe]
api_base = "$STRIPE_URL"
secret_key = "sk_test_posedge_soak"
online_timeout = "2s"

[conexxus]
transport = "http"
url = "http://127.0.0.1:$BO_PORT/naxml"
timeout = "2s"

[offline_payments]
max_transaction_amount = "1000.00"
max_daily_total = "100000000.00"
max_outstanding_total = "100000000.00"
approval_required_over = "100000.00"

[backup]
interval = "2m"
keep = 2
EOF
env -u JOURNAL_STREAM "$BIN" serve --config "$WORK/config.toml" >"$WORK/posedge.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
    python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$URL/healthz" 2>/dev/null && break
    sleep 0.1
done

echo "== soak: ${SOAK_SECONDS}s, $REGISTERS registers every ${PACE_MS} ms, outages every minute" >&2
"$SOAK" drive --url "$URL" --token "$TOKEN" --registers "$REGISTERS" --pace-ms "$PACE_MS" \
    --seconds "$SOAK_SECONDS" >"$WORK/drive.json" &
DRIVE_PID=$!
"$SOAK" sample --pid "$DAEMON_PID" --db "$WORK/data/posedge.db" --url "$URL" \
    --every-s "$SAMPLE_EVERY_S" --seconds "$SOAK_SECONDS" --out "$REPO/target/soak.csv" \
    >"$WORK/sample.json" &
SAMPLE_PID=$!

# Outages: from t = 20 s of each minute, 20 s long.
started=$(date +%s)
minute=0
while (( $(date +%s) - started < SOAK_SECONDS - 30 )); do
    sleep $(( started + minute * 60 + 20 - $(date +%s) > 0 ? started + minute * 60 + 20 - $(date +%s) : 0 ))
    if (( minute % 2 )); then kill -USR1 "$FAKE_PID"; how=dark; else kill -USR2 "$FAKE_PID"; how=refusing; fi
    stop_pid "$BO_PID"
    echo "-- t=$(( $(date +%s) - started ))s outage: stripe $how, back office stopped" >&2
    sleep 20
    kill -HUP "$FAKE_PID"
    start_backoffice
    echo "-- t=$(( $(date +%s) - started ))s upstreams back" >&2
    minute=$((minute + 1))
done

wait "$DRIVE_PID"; DRIVE_PID=""
wait "$SAMPLE_PID"; SAMPLE_PID=""

echo "== draining the outbox with both upstreams up" >&2
for _ in $(seq 1 120); do
    depth="$(get_json "$URL/health/offline-queue" | python3 -c 'import json,sys; q=json.load(sys.stdin); print(q["pending"]+q["in_flight"]+q["retrying"])')"
    [[ "$depth" == 0 ]] && break
    sleep 1
done
stop_pid "$DAEMON_PID"; DAEMON_PID=""
stop_pid "$BO_PID"; BO_PID=""
stop_pid "$FAKE_PID"; FAKE_PID=""

python3 - "$WORK" "$SOAK_SECONDS" <<'PY'
import glob, json, sqlite3, sys
work, seconds = sys.argv[1], sys.argv[2]
drive = json.load(open(f"{work}/drive.json"))
sample = json.load(open(f"{work}/sample.json"))
db = sqlite3.connect(f"file:{work}/data/posedge.db?mode=ro", uri=True)
sales = db.execute("SELECT count(*) FROM sales").fetchone()[0]
captured = db.execute("SELECT count(*) FROM payments WHERE method = 'card' AND status = 'captured'").fetchone()[0]
offline = db.execute("SELECT count(*) FROM payments WHERE method = 'card' AND mode = 'offline'").fetchone()[0]
undelivered = db.execute("SELECT count(*) FROM outbox WHERE state != 'delivered'").fetchone()[0]
journals = {k for (k,) in db.execute("SELECT idempotency_key FROM outbox WHERE kind = 'naxml_sale'")}
keys = set()
for log in glob.glob(f"{work}/backoffice-*.log"):
    for line in open(log):
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "200":
            keys.add(parts[2])
stats = [json.loads(l) for l in open(f"{work}/stripe.out") if '"stats"' in l]
intents = stats[-1]["intents"] if stats else None
checks = {
    "register_errors": drive["errors"] == 0,
    "outbox_empty": undelivered == 0,
    # Each sale's journal went out under its own key (re-sends reuse it) and arrived.
    "every_sale_at_back_office": len(journals) == sales and journals <= keys,
    "one_intent_per_captured_payment": intents == captured,
}
summary = {
    "seconds": float(seconds),
    "drive": drive,
    "sales": sales,
    "card_payments_captured": captured,
    "of_which_decided_offline": offline,
    "journal_documents": len(journals),
    "back_office_distinct_keys": len(keys),
    "stripe_intents": intents,
    "outbox_not_delivered": undelivered,
    "resources": sample,
    "checks": checks,
    "pass": sample["pass"] and all(checks.values()),
}
print(json.dumps(summary, indent=1))
sys.exit(0 if summary["pass"] else 1)
PY
