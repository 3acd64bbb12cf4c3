#!/usr/bin/env bash
# Outbox drain benchmark: a recorded backlog of NAXML sale documents against a fake Conexxus
# back office on loopback (bench/backoffice.rs), through the real `posedge serve` binary.
#
#   bash bench/drain.sh                      # RUNS=3 of every scenario
#   RUNS=5 RUNS_1M=1 bash bench/drain.sh     # fewer rounds of the 1,000,000-row scenario
#   SCENARIOS="drain flush" bash bench/drain.sh
#
# Scenarios (each RUNS times, on a fresh copy of a backlog built once per invocation):
#   drain    100,000 pending rows, back office up answering every POST in 5 ms,
#            [outbox] max_concurrent = 5, no rate limit: rows/s = rows / (first POST .. last
#            POST at the back office), as % of the ideal 5 slots / 5 ms = 1,000/s; every
#            Idempotency-Key must arrive exactly once and the database must end with 0 rows
#            not 'delivered'.
#   paced    1,000 rows, [conexxus] rate_limit_per_sec = 25, back office answering 429 to the
#            26th POST started within any 1-second sliding window: measured rate =
#            (POSTs - 1) / (first .. last POST), its deviation from 25, and the 429s.
#   startup  1,000,000 pending rows, back office DOWN (port closed): exec of `posedge serve`
#            to READY=1 (NOTIFY_SOCKET on a datagram socket this script listens on) and to
#            the first GET /healthz 200; VmRSS after 10 s idle; then the back office opens,
#            10 s of draining, VmRSS (sampled every 250 ms) and VmHWM; the peak is the larger
#            (the kernel updates VmHWM lazily).
#   flush    1,000 rows, back office down, daemon running (probe offline_interval 200 ms);
#            the back office opens its port: time from the port opening to the first POST.
#
# Goals (the issue): drain >= 90% of 1,000/s; paced within 5% of 25/s with no 429; with
# 1,000,000 pending rows RSS < 30 MB and start-up to READY < 1 s; flushing starts < 1 s after
# the upstream is back. Figures are min / median / max over the runs; rates, start-up and
# flush are judged on the median, exactly-once, 429s and RSS on every run (worst case).
#
# The backlog is made by `posedge migrate` then `backoffice backlog`, which calls
# `posedge::ledger::record` for each sale: the outbox rows are exactly what the daemon writes.
# Copies of it are read from the page cache, so start-up is measured with a warm cache.
# The back office's mean answer time is calibrated to exactly --latency-ms (it is printed),
# and it reports how many POSTs were in flight over time, so a shortfall can be placed on
# the daemon's side. Per-run lines go to stderr, raw results to
# target/bench-drain-results.jsonl; KEEP_WORK=1 keeps the work directory (logs, backlog templates).
# The machine is not idle-checked: "of which other processes %" shows CPU taken by anything
# else during the drain runs.
set -euo pipefail

RUNS="${RUNS:-3}"
RUNS_1M="${RUNS_1M:-$RUNS}"
SCENARIOS="${SCENARIOS:-drain paced startup flush}"
DRAIN_ROWS="${DRAIN_ROWS:-100000}"
PACED_ROWS="${PACED_ROWS:-1000}"
BIG_ROWS="${BIG_ROWS:-1000000}"
FLUSH_ROWS="${FLUSH_ROWS:-1000}"
LATENCY_MS=5
MAX_CONCURRENT=5
PACED_RATE=25
IDLE_SECONDS=10
BIG_DRAIN_SECONDS=10
# A drain that makes no progress for this long fails the run instead of hanging.
STALL_SECONDS=60

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

echo "== building (release)" >&2
cargo build --release --bin posedge --example backoffice >&2
BIN="$REPO/target/release/posedge"
BACKOFFICE="$REPO/target/release/examples/backoffice"

mkdir -p "$REPO/target"
WORK="$(mktemp -d -p "$REPO/target" bench-drain.XXXXXX)"
# Every process this script starts, stopped on exit whatever happens.
PIDS=()
stop_pid() {
    local pid="$1"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then
        rm -rf "$WORK"
    else
        echo "kept $WORK" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS="$WORK/results.jsonl"
: > "$RESULTS"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Body of a GET, or nothing if it fails.
http_get() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception:
    pass
PY
}

# One field of a JSON document on stdin ("" when absent or null).
json_field() {
    python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print("" if v is None else v)
except Exception:
    print("")
' "$1"
}

db_count() {
    python3 - "$1" "$2" <<'PY'
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(c.execute(sys.argv[2]).fetchone()[0])
PY
}

proc_status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || true; }
# utime + stime of a process, in clock ticks.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Busy and total jiffies of the whole machine.
machine_ticks() { awk 'NR == 1 {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc)"

# write_config DIR DAEMON_PORT BACKOFFICE_PORT RATE_LIMIT
write_config() {
    cat > "$1/config.toml" <<EOF
[store]
timezone = "UTC"

[server]
listen = "127.0.0.1:$2"

[database]
path = "$1/data/posedge.db"

[backup]
directory = "$1/data/backups"

[probe]
interval = "1s"
offline_interval = "200ms"
internet_targets = []

[outbox]
max_concurrent = $MAX_CONCURRENT

[conexxus]
transport = "http"
url = "http://127.0.0.1:$3/naxml"
rate_limit_per_sec = $4
EOF
    chmod 600 "$1/config.toml"
}

# make_template NAME ROWS: a migrated database holding ROWS pending naxml_sale rows.
make_template() {
    local dir="$WORK/tpl-$1"
    mkdir -p "$dir"
    write_config "$dir" 1 1 0
    "$BIN" migrate --config "$dir/config.toml" >"$dir/migrate.log" 2>&1 || {
        cat "$dir/migrate.log" >&2
        exit 1
    }
    local line
    line="$("$BACKOFFICE" backlog --db "$dir/data/posedge.db" --rows "$2")"
    echo "== backlog $1: $line ($(du -m "$dir/data/posedge.db" | cut -f1) MB)" >&2
    if [[ "$(echo "$line" | json_field pending)" != "$2" ]]; then
        echo "backlog $1: expected $2 pending rows" >&2
        exit 1
    fi
}
declare -A TEMPLATE_DONE=()
template() {
    if [[ -z "${TEMPLATE_DONE[$1]:-}" ]]; then
        make_template "$1" "$2"
        TEMPLATE_DONE[$1]=1
    fi
}

# fresh_run NAME TEMPLATE: a run directory with its own copy of the backlog.
fresh_run() {
    local dir="$WORK/$1"
    rm -rf "$dir"
    mkdir -p "$dir/data"
    chmod 700 "$dir/data"
    cp "$WORK/tpl-$2/data/posedge.db" "$dir/data/posedge.db"
    echo "$dir"
}

# start_backoffice DIR PORT ARGS... -> BO_PID; returns when it is listening (or waiting).
start_backoffice() {
    local dir="$1" port="$2"
    shift 2
    "$BACKOFFICE" serve --listen "127.0.0.1:$port" --latency-ms "$LATENCY_MS" "$@" \
        >"$dir/backoffice.log" 2>&1 &
    BO_PID=$!
    PIDS+=("$BO_PID")
    for _ in $(seq 1 100); do
        if grep -q '"event"' "$dir/backoffice.log" 2>/dev/null; then return 0; fi
        if ! kill -0 "$BO_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "the back office did not start; its log:" >&2
    cat "$dir/backoffice.log" >&2
    exit 1
}

wait_healthy() {
    local dir="$1" port="$2" pid="$3"
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "posedge exited during start-up; its log:" >&2
            cat "$dir/posedge.log" >&2
            exit 1
        fi
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)" == 200 ]]; then
            return 0
        fi
        sleep 0.05
    done
    echo "posedge did not answer GET /healthz 200 within 10 s; its log:" >&2
    cat "$dir/posedge.log" >&2
    exit 1
}

# start_daemon DIR PORT -> DAEMON_PID, healthy.
start_daemon() {
    env -u JOURNAL_STREAM -u NOTIFY_SOCKET "$BIN" serve --config "$1/config.toml" \
        >"$1/posedge.log" 2>&1 &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    wait_healthy "$1" "$2" "$DAEMON_PID"
}

# wait_accepted BO_PORT N: until the back office accepted N documents; fails on a stall.
wait_accepted() {
    local url="http://127.0.0.1:$1/stats" want="$2" last=-1 still=0 n
    while :; do
        n="$(http_get "$url" | json_field distinct_keys)"
        n="${n:-0}"
        if ((n >= want)); then return 0; fi
        if [[ "$n" == "$last" ]]; then
            still=$((still + 1))
            if ((still >= STALL_SECONDS)); then
                echo "no progress for ${STALL_SECONDS}s at $n of $want documents" >&2
                return 1
            fi
        else
            still=0
            last="$n"
        fi
        sleep 1
    done
}

# wait_queue_empty DAEMON_PORT: until the daemon has recorded every outcome (pending and
# in_flight both 0), at most 30 s; the database is checked after the stop anyway.
wait_queue_empty() {
    local q
    for _ in $(seq 1 300); do
        q="$(http_get "http://127.0.0.1:$1/health/offline-queue")"
        if [[ "$(echo "$q" | json_field pending)" == 0 && "$(echo "$q" | json_field in_flight)" == 0 ]]; then
            return 0
        fi
        sleep 0.1
    done
}

# The READY / healthz watcher for the start-up scenario: binds NOTIFY_SOCKET, then stamps
# READY=1 and the first GET /healthz 200 (polled every 2 ms) with CLOCK_REALTIME in ns.
cat > "$WORK/watch_start.py" <<'PY'
import json, os, socket, sys, threading, time
notify_path, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {"ready_ns": None, "healthz_ns": None, "notify": []}
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(notify_path)
def listen():
    while True:
        msg = sock.recv(4096).decode(errors="replace")
        now = time.time_ns()
        res["notify"].append(msg.replace("\n", " ").strip())
        if "READY=1" in msg.split("\n"):
            res["ready_ns"] = now
            return
threading.Thread(target=listen, daemon=True).start()
open(out + ".bound", "w").close()
deadline = time.time() + 60
req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
while time.time() < deadline and res["healthz_ns"] is None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(req)
        data = b""
        while not data.endswith(b"}") and len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        if data.split(b" ")[1:2] == [b"200"]:
            res["healthz_ns"] = time.time_ns()
            break
    except OSError:
        pass
    time.sleep(0.002)
while res["ready_ns"] is None and time.time() < deadline:
    time.sleep(0.01)
json.dump(res, open(out, "w"))
PY

record() { echo "$1" >> "$RESULTS"; }

# ---------------------------------------------------------------------------------------
scenario_drain() {
    template drain "$DRAIN_ROWS"
    local run dir bo_port d_port stats busy0 busy1 dcpu bcpu not_delivered total
    for run in $(seq 1 "$RUNS"); do
        dir="$(fresh_run "drain-$run" drain)"
        bo_port="$(free_port)"
        d_port="$(free_port)"
        write_config "$dir" "$d_port" "$bo_port" 0
        start_backoffice "$dir" "$bo_port"
        read -r busy0 _ <<<"$(machine_ticks)"
        local t0 t1
        t0="$(date +%s.%N)"
        start_daemon "$dir" "$d_port"
        wait_accepted "$bo_port" "$DRAIN_ROWS" || true
        t1="$(date +%s.%N)"
        wait_queue_empty "$d_port"
        read -r busy1 _ <<<"$(machine_ticks)"
        dcpu="$(proc_ticks "$DAEMON_PID")"
        bcpu="$(proc_ticks "$BO_PID")"
        stop_pid "$DAEMON_PID"
        stats="$(http_get "http://127.0.0.1:$bo_port/stats")"
        stop_pid "$BO_PID"
        not_delivered="$(db_count "$dir/data/posedge.db" "SELECT count(*) FROM outbox WHERE state != 'delivered'")"
        total="$(db_count "$dir/data/posedge.db" "SELECT count(*) FROM outbox")"
        local line
        line="{\"scenario\":\"drain\",\"run\":$run,\"rows\":$DRAIN_ROWS,\"stats\":$stats,\"not_delivered\":$not_delivered,\"outbox_rows\":$total,\"daemon_cpu_s\":$(echo "$dcpu $CLK_TCK" | awk '{print $1/$2}'),\"backoffice_cpu_s\":$(echo "$bcpu $CLK_TCK" | awk '{print $1/$2}'),\"machine_busy_s\":$(echo "$busy0 $busy1 $CLK_TCK" | awk '{print ($2-$1)/$3}'),\"wall_s\":$(echo "$t0 $t1" | awk '{print $2-$1}')}"
        record "$line"
        python3 - "$line" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1]); s = r["stats"]
span = (s["last_post_ms"] or 0) - (s["first_post_ms"] or 0)
rate = r["rows"] / (span / 1000) if span > 0 else 0
print(f"drain run {r['run']}: {rate:.0f} rows/s ({rate/10:.1f}% of 1000/s), keys {s['distinct_keys']}, "
      f"dups {s['duplicates']}, not delivered {r['not_delivered']}, mean in flight {s['mean_concurrency']}, "
      f"answer {s['mean_service_ms']} ms, daemon CPU {r['daemon_cpu_s']:.1f} s")
PY
        rm -rf "$dir/data"
    done
}

scenario_paced() {
    template paced "$PACED_ROWS"
    local run dir bo_port d_port stats
    for run in $(seq 1 "$RUNS"); do
        dir="$(fresh_run "paced-$run" paced)"
        bo_port="$(free_port)"
        d_port="$(free_port)"
        write_config "$dir" "$d_port" "$bo_port" "$PACED_RATE"
        start_backoffice "$dir" "$bo_port" --limit-per-sec "$PACED_RATE" --log "$dir/posts.log"
        start_daemon "$dir" "$d_port"
        wait_accepted "$bo_port" "$PACED_ROWS" || true
        stop_pid "$DAEMON_PID"
        stats="$(http_get "http://127.0.0.1:$bo_port/stats")"
        stop_pid "$BO_PID"
        local line
        # Gaps between consecutive POST arrivals, from the back office's log.
        local gaps
        gaps="$(python3 - "$dir/posts.log" <<'PY'
import json, sys
t = [float(l.split()[0]) for l in open(sys.argv[1]) if l.strip()]
g = sorted(b - a for a, b in zip(t, t[1:]))
pick = lambda p: g[min(len(g) - 1, int(p / 100 * len(g)))] if g else None
print(json.dumps({"p1": pick(1), "p50": pick(50), "p99": pick(99), "n": len(g)}))
PY
)"
        line="{\"scenario\":\"paced\",\"run\":$run,\"rows\":$PACED_ROWS,\"stats\":$stats,\"gaps_ms\":$gaps}"
        record "$line"
        python3 - "$line" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1]); s = r["stats"]
span = (s["last_post_ms"] or 0) - (s["first_post_ms"] or 0)
rate = (s["posts"] - 1) / (span / 1000) if span > 0 else 0
print(f"paced run {r['run']}: {rate:.3f} POSTs/s, 429s {s['status_429']}, keys {s['distinct_keys']}, "
      f"max POSTs in any 1 s {s['max_posts_in_any_1s']}, min gap {s['min_gap_ms']} ms")
PY
        rm -rf "$dir/data"
    done
}

scenario_startup() {
    template big "$BIG_ROWS"
    local run dir bo_port d_port stats idle_rss idle_hwm max_rss rss drain_rss drain_hwm exec_ns
    for run in $(seq 1 "$RUNS_1M"); do
        dir="$(fresh_run "startup-$run" big)"
        bo_port="$(free_port)"
        d_port="$(free_port)"
        write_config "$dir" "$d_port" "$bo_port" 0
        start_backoffice "$dir" "$bo_port" --down 1
        rm -f "$dir/notify.sock" "$dir/start.json" "$dir/start.json.bound"
        python3 "$WORK/watch_start.py" "$dir/notify.sock" "$d_port" "$dir/start.json" &
        local watch_pid=$!
        PIDS+=("$watch_pid")
        for _ in $(seq 1 200); do
            [[ -e "$dir/start.json.bound" ]] && break
            sleep 0.01
        done
        # Stamp, then exec: the daemon's pid is this background job's pid.
        env -u JOURNAL_STREAM NOTIFY_SOCKET="$dir/notify.sock" python3 -c '
import os, sys, time
open(sys.argv[1], "w").write(str(time.time_ns()))
os.execv(sys.argv[2], sys.argv[2:])
' "$dir/exec_ns" "$BIN" serve --config "$dir/config.toml" >"$dir/posedge.log" 2>&1 &
        DAEMON_PID=$!
        PIDS+=("$DAEMON_PID")
        wait "$watch_pid" || true
        wait_healthy "$dir" "$d_port" "$DAEMON_PID"
        exec_ns="$(cat "$dir/exec_ns")"
        sleep "$IDLE_SECONDS"
        idle_rss="$(proc_status_kb "$DAEMON_PID" VmRSS)"
        idle_hwm="$(proc_status_kb "$DAEMON_PID" VmHWM)"
        local pending_idle
        pending_idle="$(http_get "http://127.0.0.1:$d_port/health/offline-queue" | json_field pending)"
        # The back office opens its port; sample RSS while the daemon drains.
        kill -USR1 "$BO_PID"
        max_rss=0
        for _ in $(seq 1 $((BIG_DRAIN_SECONDS * 4))); do
            sleep 0.25
            rss="$(proc_status_kb "$DAEMON_PID" VmRSS)"
            if ((${rss:-0} > max_rss)); then max_rss="$rss"; fi
        done
        drain_rss="$(proc_status_kb "$DAEMON_PID" VmRSS)"
        drain_hwm="$(proc_status_kb "$DAEMON_PID" VmHWM)"
        stats="$(http_get "http://127.0.0.1:$bo_port/stats")"
        stop_pid "$DAEMON_PID"
        stop_pid "$BO_PID"
        local line
        line="{\"scenario\":\"startup\",\"run\":$run,\"rows\":$BIG_ROWS,\"exec_ns\":$exec_ns,\"watch\":$(cat "$dir/start.json"),\"idle_rss_kb\":$idle_rss,\"idle_hwm_kb\":$idle_hwm,\"pending_idle\":${pending_idle:-null},\"drain_max_rss_kb\":$max_rss,\"drain_rss_kb\":$drain_rss,\"drain_hwm_kb\":$drain_hwm,\"drain_seconds\":$BIG_DRAIN_SECONDS,\"stats\":$stats}"
        record "$line"
        python3 - "$line" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1]); w = r["watch"]; s = r["stats"]
ready = (w["ready_ns"] - r["exec_ns"]) / 1e6 if w["ready_ns"] else None
hz = (w["healthz_ns"] - r["exec_ns"]) / 1e6 if w["healthz_ns"] else None
print(f"startup run {r['run']}: READY {ready} ms, /healthz {hz} ms, pending {r['pending_idle']}, "
      f"RSS idle {r['idle_rss_kb']/1024:.1f} MB, draining max {r['drain_max_rss_kb']/1024:.1f} MB, "
      f"VmHWM {r['drain_hwm_kb']/1024:.1f} MB, {s['accepted']} sent in {r['drain_seconds']} s")
PY
        rm -rf "$dir/data"
    done
}

scenario_flush() {
    template flush "$FLUSH_ROWS"
    local run dir bo_port d_port stats net first
    for run in $(seq 1 "$RUNS"); do
        dir="$(fresh_run "flush-$run" flush)"
        bo_port="$(free_port)"
        d_port="$(free_port)"
        write_config "$dir" "$d_port" "$bo_port" 0
        start_backoffice "$dir" "$bo_port" --down 1
        start_daemon "$dir" "$d_port"
        # Let the probe see it down for a while (several 200 ms rounds).
        sleep 2
        net="$(http_get "http://127.0.0.1:$d_port/health/network" | json_field upstreams.conexxus.status)"
        kill -USR1 "$BO_PID"
        for _ in $(seq 1 100); do
            sleep 0.1
            first="$(http_get "http://127.0.0.1:$bo_port/stats" | json_field first_post_ms)"
            [[ -n "$first" ]] && break
        done
        wait_accepted "$bo_port" "$FLUSH_ROWS" || true
        stats="$(http_get "http://127.0.0.1:$bo_port/stats")"
        stop_pid "$DAEMON_PID"
        stop_pid "$BO_PID"
        local line
        line="{\"scenario\":\"flush\",\"run\":$run,\"rows\":$FLUSH_ROWS,\"status_before\":\"$net\",\"stats\":$stats}"
        record "$line"
        python3 - "$line" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1]); s = r["stats"]
o, f, g = s["opened_ms"], s["first_post_ms"], s["first_gets_ms"]
print(f"flush run {r['run']}: conexxus was {r['status_before']}; open -> first POST "
      f"{(f - o) if f is not None else None} ms; probe GETs after open at "
      f"{[round(x - o, 1) for x in g[:3]]} ms; {s['distinct_keys']}/{r['rows']} delivered")
PY
        rm -rf "$dir/data"
    done
}

for s in $SCENARIOS; do
    echo "== scenario $s" >&2
    case "$s" in
        drain) scenario_drain ;;
        paced) scenario_paced ;;
        startup) scenario_startup ;;
        flush) scenario_flush ;;
        *)
            echo "unknown scenario $s" >&2
            exit 2
            ;;
    esac
done

cp "$RESULTS" "$REPO/target/bench-drain-results.jsonl"
echo "== raw results: target/bench-drain-results.jsonl" >&2

python3 - "$RESULTS" "$RUNS" "$RUNS_1M" "$NCPU" <<'PY'
import json, statistics, sys

path, runs, runs_1m, ncpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [json.loads(l) for l in open(path)]
by = {}
for r in rows:
    by.setdefault(r["scenario"], []).append(r)

def span_ms(s):
    if s["first_post_ms"] is None or s["last_post_ms"] is None:
        return None
    return s["last_post_ms"] - s["first_post_ms"]

metrics = {}  # key -> list of per-run values
def put(key, v):
    metrics.setdefault(key, [])
    if v is not None:
        metrics[key].append(v)

checks = {}
for r in by.get("drain", []):
    s = r["stats"]
    sp = span_ms(s)
    rate = r["rows"] / (sp / 1000) if sp else None
    put("drain_rate", rate)
    put("drain_pct", rate / 10 if rate else None)
    put("drain_conc", s["mean_concurrency"])
    put("drain_service", s["mean_service_ms"])
    put("drain_cpu", 100 * r["daemon_cpu_s"] / (sp / 1000) if sp else None)
    put("drain_machine", 100 * r["machine_busy_s"] / r["wall_s"] / ncpu if r["wall_s"] else None)
    put("drain_other", 100 * (r["machine_busy_s"] - r["daemon_cpu_s"] - r["backoffice_cpu_s"]) / r["wall_s"] / ncpu
        if r["wall_s"] else None)
    occ = s["occupancy_ms"]
    if sum(occ) > 0:
        put("drain_full", 100 * occ[5] / sum(occ))
        put("drain_low", 100 * sum(occ[:3]) / sum(occ))
    ok = (s["distinct_keys"] == r["rows"] and s["duplicates"] == 0 and r["not_delivered"] == 0
          and r["outbox_rows"] == r["rows"])
    checks.setdefault("drain_once", []).append(ok)
    put("drain_keys", s["distinct_keys"])
    put("drain_dups", s["duplicates"])
    put("drain_undelivered", r["not_delivered"])
for r in by.get("paced", []):
    s = r["stats"]
    sp = span_ms(s)
    rate = (s["posts"] - 1) / (sp / 1000) if sp else None
    put("paced_rate", rate)
    put("paced_dev", 100 * abs(rate - 25) / 25 if rate else None)
    put("paced_429", s["status_429"])
    put("paced_maxwin", s["max_posts_in_any_1s"])
    put("paced_gap", s["min_gap_ms"])
    put("paced_ok_rate", s["accepted"] / (sp / 1000) if sp else None)
    g = r.get("gaps_ms") or {}
    put("paced_p1", g.get("p1"))
    put("paced_p50", g.get("p50"))
    put("paced_p99", g.get("p99"))
    checks.setdefault("paced_done", []).append(s["distinct_keys"] == r["rows"])
for r in by.get("startup", []):
    w, s = r["watch"], r["stats"]
    put("st_ready", (w["ready_ns"] - r["exec_ns"]) / 1e6 if w["ready_ns"] else None)
    put("st_healthz", (w["healthz_ns"] - r["exec_ns"]) / 1e6 if w["healthz_ns"] else None)
    put("st_idle_rss", r["idle_rss_kb"] / 1024)
    put("st_drain_rss", r["drain_max_rss_kb"] / 1024)
    put("st_hwm", r["drain_hwm_kb"] / 1024)
    # VmHWM is updated lazily by the kernel and can trail a sampled VmRSS: take the larger.
    put("st_peak", max(r["drain_hwm_kb"], r["drain_max_rss_kb"], r["idle_hwm_kb"]) / 1024)
    put("st_sent", s["accepted"])
    put("st_rate", s["accepted"] / (span_ms(s) / 1000) if span_ms(s) else None)
    put("st_flush", s["first_post_ms"] - s["opened_ms"] if s["first_post_ms"] is not None else None)
    checks.setdefault("st_ready_seen", []).append(w["ready_ns"] is not None)
    checks.setdefault("st_pending", []).append(r["pending_idle"] == r["rows"])
for r in by.get("flush", []):
    s = r["stats"]
    o = s["opened_ms"]
    put("fl_first", s["first_post_ms"] - o if s["first_post_ms"] is not None else None)
    g = s["first_gets_ms"]
    put("fl_probe1", g[0] - o if len(g) > 0 else None)
    put("fl_probe2", g[1] - o if len(g) > 1 else None)
    if len(g) > 1 and s["first_post_ms"] is not None:
        put("fl_after_probe2", s["first_post_ms"] - g[1])
    checks.setdefault("fl_done", []).append(s["distinct_keys"] == r["rows"])

table = [
    ("drain", f"drain {int(by['drain'][0]['rows']) if 'drain' in by else 0:,} rows, 5 ms, 5 slots", None, None),
    ("drain_rate", "rows/s (first..last POST)", "{:.0f}", None),
    ("drain_pct", "% of ideal 1,000/s", "{:.1f}", None),
    ("drain_conc", "mean POSTs in flight (of 5)", "{:.2f}", None),
    ("drain_full", "time with 5 POSTs in flight %", "{:.1f}", None),
    ("drain_low", "time with 0-2 POSTs in flight %", "{:.1f}", None),
    ("drain_service", "back office answer ms (mean)", "{:.3f}", None),
    ("drain_cpu", "daemon CPU % of one core", "{:.0f}", None),
    ("drain_machine", f"machine CPU busy % ({ncpu} cores)", "{:.0f}", None),
    ("drain_other", "  of which other processes %", "{:.0f}", None),
    ("drain_keys", "distinct keys received", "{:.0f}", None),
    ("drain_dups", "duplicate deliveries", "{:.0f}", None),
    ("drain_undelivered", "rows not 'delivered' at the end", "{:.0f}", None),
    ("paced", f"paced {int(by['paced'][0]['rows']) if 'paced' in by else 0:,} rows, limit 25/s", None, None),
    ("paced_rate", "POSTs/s ((n-1)/first..last)", "{:.3f}", None),
    ("paced_dev", "deviation from 25/s %", "{:.2f}", None),
    ("paced_ok_rate", "accepted (2xx) POSTs/s", "{:.3f}", None),
    ("paced_429", "429 answers", "{:.0f}", None),
    ("paced_maxwin", "max POSTs started in any 1 s", "{:.0f}", None),
    ("paced_gap", "min gap between POSTs ms", "{:.2f}", None),
    ("paced_p1", "gap between POSTs p1 ms", "{:.2f}", None),
    ("paced_p50", "gap between POSTs p50 ms", "{:.2f}", None),
    ("paced_p99", "gap between POSTs p99 ms", "{:.2f}", None),
    ("startup", f"start-up, {int(by['startup'][0]['rows']) if 'startup' in by else 0:,} pending, upstream down", None, None),
    ("st_ready", "exec -> READY=1 ms", "{:.0f}", None),
    ("st_healthz", "exec -> GET /healthz 200 ms", "{:.0f}", None),
    ("st_idle_rss", "VmRSS MB after 10 s idle", "{:.1f}", None),
    ("st_drain_rss", "VmRSS MB max while draining", "{:.1f}", None),
    ("st_hwm", "VmHWM MB at the end", "{:.1f}", None),
    ("st_peak", "peak RSS MB (VmHWM or sampled VmRSS)", "{:.1f}", None),
    ("st_rate", "rows/s while draining (10 s)", "{:.0f}", None),
    ("st_flush", "open -> first POST ms (1M)", "{:.0f}", None),
    ("flush", f"flush, {int(by['flush'][0]['rows']) if 'flush' in by else 0:,} pending, upstream reopens", None, None),
    ("fl_first", "port open -> first POST ms", "{:.0f}", None),
    ("fl_probe1", "port open -> 1st probe GET ms", "{:.0f}", None),
    ("fl_probe2", "port open -> 2nd probe GET ms", "{:.0f}", None),
    ("fl_after_probe2", "2nd probe GET -> first POST ms", "{:.0f}", None),
]

def stats(key):
    vals = metrics.get(key) or []
    if not vals:
        return None
    return min(vals), statistics.median(vals), max(vals)

print()
print(f"posedge outbox drain benchmark: {runs} runs per scenario ({runs_1m} for the 1,000,000-row start-up)")
print(f"{'metric':<40} {'min':>10} {'median':>10} {'max':>10}")
print("-" * 73)
for key, label, fmt, _ in table:
    if fmt is None:
        if key in by:
            print(f"[{label}]")
        continue
    if key.split("_")[0] not in ("drain", "paced", "st", "fl"):
        continue
    scen = {"drain": "drain", "paced": "paced", "st": "startup", "fl": "flush"}[key.split("_")[0]]
    if scen not in by:
        continue
    s = stats(key)
    if s is None:
        print(f"  {label:<38} {'n/a':>10} {'n/a':>10} {'n/a':>10}")
    else:
        print(f"  {label:<38} " + " ".join(f"{fmt.format(v):>10}" for v in s))
print()

def verdict(ok):
    return "PASS" if ok else "FAIL"

print("goals:")
if "drain" in by:
    s = stats("drain_pct")
    ok = s is not None and s[1] >= 90
    print(f"  drain >= 90% of 1,000 rows/s (median)    : {verdict(ok)} "
          + (f"(median {s[1]:.1f}%, min {s[0]:.1f}, max {s[2]:.1f})" if s else "(no data)"))
    once = checks.get("drain_once", [])
    print(f"  every key exactly once, 0 undelivered    : {verdict(bool(once) and all(once))} "
          f"({sum(once)}/{len(once)} runs)")
if "paced" in by:
    s = stats("paced_dev")
    ok = s is not None and s[1] <= 5
    print(f"  paced rate within 5% of 25/s (median)    : {verdict(ok)} "
          + (f"(median {stats('paced_rate')[1]:.3f}/s, deviation {s[1]:.2f}%, worst {s[2]:.2f}%)" if s else "(no data)"))
    n429 = sum(metrics.get("paced_429", []))
    done = checks.get("paced_done", [])
    print(f"  upstream never answers 429 (all runs)    : {verdict(n429 == 0 and all(done))} "
          f"({n429} x 429 over {len(done)} runs; max {max(metrics.get('paced_maxwin') or [0])} POSTs started in one 1 s window)")
if "startup" in by:
    s = stats("st_ready")
    ok = s is not None and s[1] < 1000 and all(checks.get("st_ready_seen", []))
    print(f"  1M pending: exec -> READY < 1 s (median) : {verdict(ok)} "
          + (f"(median {s[1]:.0f} ms, max {s[2]:.0f}; /healthz median {stats('st_healthz')[1]:.0f} ms)" if s else "(no READY seen)"))
    h = stats("st_peak")
    ok = h is not None and h[2] < 30
    print(f"  1M pending: RSS < 30 MB (peak, all runs) : {verdict(ok)} "
          + (f"(peak {h[2]:.1f} MB, median run {h[1]:.1f}; idle VmRSS median {stats('st_idle_rss')[1]:.1f} MB)" if h else "(no data)"))
if "flush" in by:
    s = stats("fl_first")
    ok = s is not None and s[1] < 1000 and len(metrics["fl_first"]) == len(by["flush"])
    print(f"  flush starts < 1 s after the port opens  : {verdict(ok)} "
          + (f"(median {s[1]:.0f} ms, min {s[0]:.0f}, max {s[2]:.0f})" if s else "(no POST seen)"))
PY
