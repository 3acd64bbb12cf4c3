#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets in tests/fuzz/ (nightly, libFuzzer, AddressSanitizer,
# overflow checks on) and runs each for FUZZ_SECONDS (default 60), FUZZ_JOBS (default 2) at a
# time. Fails when any target finds a crash, a panic, a failed check, a hang (one input over
# 10 s) or runs out of memory; the failing input is left under $FUZZ_OUT/artifacts/<target>/
# and its log under $FUZZ_OUT/logs/.
#
#   bash .ci/fuzz.sh                                   # CI: every target, 60 s each
#   FUZZ_SECONDS=1800 bash .ci/fuzz.sh                 # the longer run
#   FUZZ_TARGETS="sale_body config_toml" FUZZ_SECONDS=600 bash .ci/fuzz.sh
#
# New inputs go to $FUZZ_OUT/corpus/<target>/ (kept between local runs); the committed seeds
# in tests/fuzz/corpus/ are only read. A crash input is fixed in the code and then committed
# under tests/fuzz/regressions/<target>/, which the stable `cargo test` replays.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_DIR=tests/fuzz
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
FUZZ_OUT=${FUZZ_OUT:-$PWD/target/fuzz-run}
# Its own target dir: the sanitizer flags would otherwise rebuild the main crate's artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

started=$(date +%s)
echo "+ cargo +nightly fuzz build --fuzz-dir $FUZZ_DIR"
cargo +nightly fuzz build --fuzz-dir "$FUZZ_DIR"
built=$(date +%s)

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir "$FUZZ_DIR" | tr '\n' ' ')}"
mkdir -p "$FUZZ_OUT/logs"

run_one() {
  local t=$1 dict=()
  mkdir -p "$FUZZ_OUT/corpus/$t" "$FUZZ_OUT/artifacts/$t"
  # A target with a dictionary (tests/fuzz/<target>.dict) gets its tokens spliced in.
  if [ -f "$FUZZ_DIR/$t.dict" ]; then dict=(-dict="$FUZZ_DIR/$t.dict"); fi
  cargo +nightly fuzz run --fuzz-dir "$FUZZ_DIR" "$t" \
    "$FUZZ_OUT/corpus/$t" "$FUZZ_DIR/corpus/$t" -- "${dict[@]}" \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$FUZZ_OUT/artifacts/$t/" -print_final_stats=1 \
    >"$FUZZ_OUT/logs/$t.log" 2>&1
}

declare -A pids=()
failed=()
reap() {
  # Waits for any one run to end and records whether its target failed.
  local done_pid status t
  set +e
  wait -n -p done_pid "${!pids[@]}"
  status=$?
  set -e
  t=${pids[$done_pid]}
  unset "pids[$done_pid]"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$FUZZ_OUT/logs/$t.log")
  if [ "$status" -eq 0 ]; then
    echo "ok      $t (${runs:-?} inputs)"
  else
    echo "FAILED  $t (exit $status), log: $FUZZ_OUT/logs/$t.log"
    failed+=("$t")
  fi
}

echo "+ each of ${#targets[@]} targets for ${SECONDS_EACH}s, $JOBS at a time"
for t in "${targets[@]}"; do
  while [ "${#pids[@]}" -ge "$JOBS" ]; do reap; done
  run_one "$t" &
  pids[$!]=$t
done
while [ "${#pids[@]}" -gt 0 ]; do reap; done

finished=$(date +%s)
echo "fuzz: build $((built - started))s, runs $((finished - built))s"
if [ "${#failed[@]}" -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "== $t"
    grep -E -A12 "panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY" "$FUZZ_OUT/logs/$t.log" | head -40 || tail -40 "$FUZZ_OUT/logs/$t.log"
    ls "$FUZZ_OUT/artifacts/$t/"
  done
  exit 1
fi
