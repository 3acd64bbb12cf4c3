#!/usr/bin/env bash
# Runs tests/localstripe.rs (the payment flows) against localstripe, a stateful fake of the
# Stripe API from PyPI.
#
# localstripe binds every interface, so it runs in a network namespace of its own
# (`unshare -n`: loopback only), and the tests run in the same namespace to reach it. It
# ignores Idempotency-Key: the tests count PaymentIntents per payment to see each create
# went out once. Its state pickle (/tmp/localstripe.pickle, a fixed path) goes to a
# private tmpfs when a mount namespace can be made, so no other run's file is touched.
#
#   1. a venv (target/venv-localstripe, or $LOCALSTRIPE_VENV) with the pinned localstripe;
#   2. `cargo test --no-run` outside the namespace, so nothing is fetched or built inside;
#   3. inside `unshare -n`: lo up, localstripe --from-scratch on 127.0.0.1:$PORT, the tests
#      with POSEDGE_LOCALSTRIPE_URL set, localstripe killed at the end.
#
# Needs root (unshare), `ip` (iproute2) and python3 with venv. Exits with the tests' status.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

PORT=${LOCALSTRIPE_PORT:-8420}
TEST_CMD=(cargo test --locked --offline --test tests localstripe -- --include-ignored --test-threads=1)

if [ "${1:-}" = "--in-namespace" ]; then
  # ---- inside `unshare -n` ----
  venv=$2
  log=$3
  echo "+ ip link set lo up"
  ip link set lo up
  # A private /tmp (tmpfs in a mount namespace of its own) for the pickle, if allowed, and
  # unless the checkout itself lives under /tmp (the tmpfs would hide the venv and the log).
  case "$venv:$log" in
    /tmp/*|*:/tmp/*) private_tmp=no ;;
    *) private_tmp=yes ;;
  esac
  if [ "$private_tmp" = yes ] && unshare -m --propagation private true 2>/dev/null; then
    echo "+ $venv/bin/localstripe --from-scratch --port $PORT  (private tmpfs /tmp; log $log)"
    unshare -m --propagation private bash -c \
      'mount -t tmpfs tmpfs /tmp && exec "$0" --from-scratch --port "$1"' \
      "$venv/bin/localstripe" "$PORT" >"$log" 2>&1 &
  else
    echo "+ $venv/bin/localstripe --from-scratch --port $PORT  (shared /tmp; log $log)"
    "$venv/bin/localstripe" --from-scratch --port "$PORT" >"$log" 2>&1 &
  fi
  ls_pid=$!
  stop_localstripe() {
    if kill -0 "$ls_pid" 2>/dev/null; then
      kill "$ls_pid" 2>/dev/null || true
      wait "$ls_pid" 2>/dev/null || true
      echo "localstripe (pid $ls_pid) stopped"
    fi
  }
  trap stop_localstripe EXIT
  trap 'exit 130' INT TERM
  up=0
  for _ in $(seq 1 300); do
    if ! kill -0 "$ls_pid" 2>/dev/null; then
      echo "localstripe exited before listening; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      up=1
      break
    fi
    sleep 0.1
  done
  if [ "$up" != 1 ]; then
    echo "localstripe is not listening on 127.0.0.1:$PORT after 30 s; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "localstripe (pid $ls_pid) listening on 127.0.0.1:$PORT"
  export POSEDGE_LOCALSTRIPE_URL="http://127.0.0.1:$PORT"
  echo "+ POSEDGE_LOCALSTRIPE_URL=$POSEDGE_LOCALSTRIPE_URL ${TEST_CMD[*]}"
  set +e
  "${TEST_CMD[@]}"
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    echo "localstripe tests failed (exit $rc); the last lines of localstripe's log:" >&2
    tail -n 60 "$log" >&2
  fi
  exit "$rc"
fi

# ---- outside: install, build, then re-enter this script inside `unshare -n` ----
# localstripe and everything it imports, pinned to versions seen working on Python 3.11.
PINS=(
  localstripe==1.15.10
  aiohttp==3.14.5
  aiohappyeyeballs==2.7.1
  aiosignal==1.4.0
  attrs==26.1.0
  frozenlist==1.8.0
  idna==3.20
  multidict==7.2.1
  propcache==0.5.4
  python-dateutil==4.0.0
  typing_extensions==4.16.0
  tzdata==2026.6
  yarl==1.25.1
)
VENV=${LOCALSTRIPE_VENV:-$PWD/target/venv-localstripe}
PYTHON=${PYTHON:-python3}

for tool in unshare ip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool not found (unshare: util-linux; ip: iproute2)" >&2
    exit 1
  fi
done

echo "== localstripe: venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  echo "+ $PYTHON -m venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "+ $VENV/bin/pip install ${PINS[*]}"
"$VENV/bin/pip" install --disable-pip-version-check --quiet "${PINS[@]}"
echo "localstripe $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("localstripe"))') on $("$VENV/bin/python" --version)"

echo "== localstripe: build the tests outside the namespace"
echo "+ cargo test --locked --test tests --no-run"
cargo test --locked --test tests --no-run

echo "== localstripe: run inside unshare -n"
log="$PWD/target/localstripe.log"
echo "+ unshare -n bash $SELF --in-namespace $VENV $log"
exec unshare -n bash "$SELF" --in-namespace "$VENV" "$log"
