#!/usr/bin/env bash
# Durable sales/s and p50/p99 latency at 1, 8 and 64 concurrent registers, beside the raw
# append+fdatasync rate of the same disk measured in the same run, plus idle RSS.
#
#   bash bench/sales.sh                  # RUNS=3, 5 s per measurement
#   RUNS=5 SECONDS=10 bash bench/sales.sh
#
# Goals (the issue): sales/s@64 >= 4 x fsync/s (group commit), p99@8 < 5 ms, idle RSS < 15 MB.
# Every figure is reported as min / median / max over RUNS rounds; the ratio is computed per
# round from that round's own fsync and sales numbers.
set -euo pipefail

# SECONDS is bash's own counter: read the value the caller put in the environment, if any.
MEASURE_SECONDS="$(printenv SECONDS || true)"
MEASURE_SECONDS="${MEASURE_SECONDS:-5}"
RUNS="${RUNS:-3}"
CONCURRENCIES=(1 8 64)
REGISTER=R1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

echo "== building (release)" >&2
cargo build --release --bin posedge --example loadgen >&2
BIN="$REPO/target/release/posedge"
LOADGEN="$REPO/target/release/examples/loadgen"

# Same filesystem as the target dir, so fsync/s and the database share a disk.
mkdir -p "$REPO/target"
WORK="$(mktemp -d -p "$REPO/target" bench-sales.XXXXXX)"
DAEMON_PID=""
cleanup() {
    if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then
        rm -rf "$WORK"
    else
        echo "kept $WORK" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
TOKEN="bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOKEN_HASH="$("$BIN" hash-token "$TOKEN")"
URL="http://127.0.0.1:$PORT"

cat > "$WORK/config.toml" <<EOF
[store]
timezone = "UTC"

[server]
listen = "127.0.0.1:$PORT"

[database]
path = "$WORK/data/posedge.db"

[backup]
directory = "$WORK/data/backups"

[[registers]]
id = "$REGISTER"
token_sha256 = "$TOKEN_HASH"
EOF
chmod 600 "$WORK/config.toml"

echo "== starting posedge on $URL (db $WORK/data/posedge.db)" >&2
env -u JOURNAL_STREAM "$BIN" serve --config "$WORK/config.toml" >"$WORK/posedge.log" 2>&1 &
DAEMON_PID=$!

healthy=0
for _ in $(seq 1 100); do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        echo "posedge exited during start-up; its log:" >&2
        cat "$WORK/posedge.log" >&2
        exit 1
    fi
    code="$(python3 - "$URL/healthz" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=1).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
)"
    if [[ "$code" == 200 ]]; then healthy=1; break; fi
    sleep 0.1
done
if [[ "$healthy" != 1 ]]; then
    echo "posedge did not answer GET /healthz 200 within 10 s; its log:" >&2
    cat "$WORK/posedge.log" >&2
    exit 1
fi

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status"; }

# CPU ticks now: the whole machine, the daemon, and its writer thread (to see what saturates).
cpu_snap() {
    python3 - "$DAEMON_PID" <<'PY'
import json, os, sys, time
pid = sys.argv[1]
def ticks(stat_path):
    f = open(stat_path).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime
cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
writer = 0
for t in os.listdir(f"/proc/{pid}/task"):
    try:
        if open(f"/proc/{pid}/task/{t}/comm").read().strip() == "posedge-writer":
            writer += ticks(f"/proc/{pid}/task/{t}/stat")
    except OSError:
        pass
print(json.dumps({"t": time.monotonic(), "hz": os.sysconf("SC_CLK_TCK"), "ncpu": os.cpu_count(),
                  "machine_total": sum(cpu), "machine_idle": cpu[3] + cpu[4],
                  "daemon": ticks(f"/proc/{pid}/stat"), "writer": writer}))
PY
}

sleep 2
IDLE_RSS_KB="$(rss_kb)"
echo "== idle RSS after start: ${IDLE_RSS_KB} kB" >&2

RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
for run in $(seq 1 "$RUNS"); do
    line="$("$LOADGEN" fsync --dir "$WORK" --seconds "$MEASURE_SECONDS")"
    echo "run $run fsync: $line" >&2
    echo "{\"run\":$run,\"kind\":\"fsync\",\"data\":$line}" >> "$RESULTS"
    for c in "${CONCURRENCIES[@]}"; do
        cpu0="$(cpu_snap)"
        line="$("$LOADGEN" sales --url "$URL" --token "$TOKEN" --register "$REGISTER" \
            --concurrency "$c" --seconds "$MEASURE_SECONDS")"
        cpu1="$(cpu_snap)"
        echo "run $run sales: $line" >&2
        echo "{\"run\":$run,\"kind\":\"sales\",\"data\":$line,\"cpu0\":$cpu0,\"cpu1\":$cpu1}" >> "$RESULTS"
    done
done

sleep 2
AFTER_RSS_KB="$(rss_kb)"

python3 - "$RESULTS" "$IDLE_RSS_KB" "$AFTER_RSS_KB" "$RUNS" "$MEASURE_SECONDS" <<'PY'
import json, statistics, sys

path, idle_kb, after_kb, runs, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
per_run = {}
for raw in open(path):
    r = json.loads(raw)
    d = per_run.setdefault(r["run"], {})
    if r["kind"] == "fsync":
        d["fsync"] = r["data"]["fsync_per_s"]
    else:
        c = r["data"]["concurrency"]
        d[f"sps{c}"] = r["data"]["sales_per_s"]
        d[f"p50_{c}"] = r["data"]["p50_ms"]
        d[f"p99_{c}"] = r["data"]["p99_ms"]
        d[f"err{c}"] = r["data"]["errors"]
        d[f"cps{c}"] = r["data"].get("commits_per_s")
        d[f"batch{c}"] = r["data"].get("mean_batch")
        d[f"cms{c}"] = r["data"].get("mean_commit_ms")
        a, b = r["cpu0"], r["cpu1"]
        span = b["t"] - a["t"]
        total = b["machine_total"] - a["machine_total"]
        if span > 0 and total > 0:
            d[f"mbusy{c}"] = 100.0 * (1 - (b["machine_idle"] - a["machine_idle"]) / total)
            d[f"dcpu{c}"] = 100.0 * (b["daemon"] - a["daemon"]) / b["hz"] / span
            d[f"wcpu{c}"] = 100.0 * (b["writer"] - a["writer"]) / b["hz"] / span
for d in per_run.values():
    d["ratio64"] = d["sps64"] / d["fsync"] if d.get("fsync") else None

rows = [
    ("fsync/s (raw append+fdatasync)", "fsync", "{:.0f}"),
    ("sales/s @1", "sps1", "{:.0f}"),
    ("sales/s @8", "sps8", "{:.0f}"),
    ("sales/s @64", "sps64", "{:.0f}"),
    ("p50 ms @1", "p50_1", "{:.2f}"),
    ("p99 ms @1", "p99_1", "{:.2f}"),
    ("p50 ms @8", "p50_8", "{:.2f}"),
    ("p99 ms @8", "p99_8", "{:.2f}"),
    ("p50 ms @64", "p50_64", "{:.2f}"),
    ("p99 ms @64", "p99_64", "{:.2f}"),
    ("sales/s@64 / fsync/s", "ratio64", "{:.2f}"),
    ("commits/s @1 (writer)", "cps1", "{:.0f}"),
    ("commits/s @8", "cps8", "{:.0f}"),
    ("commits/s @64", "cps64", "{:.0f}"),
    ("mean sales per commit @1", "batch1", "{:.2f}"),
    ("mean sales per commit @8", "batch8", "{:.2f}"),
    ("mean sales per commit @64", "batch64", "{:.2f}"),
    ("mean BEGIN..COMMIT ms @64", "cms64", "{:.3f}"),
    ("machine CPU busy % @64 (all cores)", "mbusy64", "{:.0f}"),
    ("daemon CPU % of one core @64", "dcpu64", "{:.0f}"),
    ("writer thread CPU % of one core @64", "wcpu64", "{:.0f}"),
    ("writer thread CPU % of one core @8", "wcpu8", "{:.0f}"),
    ("errors @1", "err1", "{:.0f}"),
    ("errors @8", "err8", "{:.0f}"),
    ("errors @64", "err64", "{:.0f}"),
]

def stats(key):
    vals = [d[key] for d in per_run.values() if d.get(key) is not None]
    if not vals:
        return None
    return min(vals), statistics.median(vals), max(vals)

print()
print(f"posedge sales benchmark: {len(per_run)} runs x {secs} s per measurement")
print(f"{'metric':<36} {'min':>10} {'median':>10} {'max':>10}")
print("-" * 69)
summary = {}
for label, key, fmt in rows:
    s = stats(key)
    summary[key] = s
    if s is None:
        print(f"{label:<36} {'n/a':>10} {'n/a':>10} {'n/a':>10}")
    else:
        print(f"{label:<36} " + " ".join(f"{fmt.format(v):>10}" for v in s))
print(f"{'idle RSS MB (after start)':<36} {idle_kb/1024:>10.1f}")
print(f"{'idle RSS MB (after the load)':<36} {after_kb/1024:>10.1f}")
print()

def verdict(ok):
    return "PASS" if ok else "FAIL"

ratio, p99_8 = summary.get("ratio64"), summary.get("p99_8")
print("goals (judged on the median across runs):")
if ratio:
    print(f"  sales/s@64 >= 4 x fsync/s : {verdict(ratio[1] >= 4)} (median ratio {ratio[1]:.2f}, min {ratio[0]:.2f}, max {ratio[2]:.2f})")
else:
    print("  sales/s@64 >= 4 x fsync/s : FAIL (no data)")
if p99_8:
    print(f"  p99 @8 < 5 ms             : {verdict(p99_8[1] < 5)} (median {p99_8[1]:.2f} ms, min {p99_8[0]:.2f}, max {p99_8[2]:.2f})")
else:
    print("  p99 @8 < 5 ms             : FAIL (no data)")
print(f"  idle RSS < 15 MB          : {verdict(idle_kb/1024 < 15)} ({idle_kb/1024:.1f} MB)")
PY
