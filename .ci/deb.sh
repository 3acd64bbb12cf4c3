#!/usr/bin/env bash
# Packaging gate (issue 6): builds the .deb with cargo-deb and fails unless
#   - lintian reports no errors (warnings are printed; overrides: packaging/lintian-overrides),
#   - `systemd-analyze verify` of the installed unit prints nothing,
#   - `systemd-analyze security --offline=true` rates the unit at exposure <= 2.0,
#   - `dpkg -i` installs it (twice: install, then the reinstall/upgrade path of postinst),
#   - `posedge check-config` passes on the installed /etc/posedge/config.toml (as posedge),
#   - the daemon started as the posedge user with the installed paths (the way the unit
#     would, minus systemd: this machine has no systemd as PID 1) answers GET /healthz 200
#     on its configured listen address, and stops on SIGTERM with exit 0,
#   - `dpkg --purge` removes /etc/posedge and keeps /var/lib/posedge with the database.
#
# It installs and purges the package on THIS machine, as root. It refuses to run where a
# posedge ledger exists that this gate did not create (a marker file tells its own leftovers),
# and it removes what it created (the ledger it made, the posedge user) when it ends.
# Needs: a Rust toolchain, Python 3, apt (installs cargo-deb, lintian, systemd-analyze,
# adduser, binutils when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
MAX_EXPOSURE=2.0
MARKER=/var/lib/posedge/.posedge-ci-deb-gate
UNIT=/usr/lib/systemd/system/posedge.service
CONFIG=/etc/posedge/config.toml
started=$(date +%s)
work=$(mktemp -d)

fail() {
  echo "deb gate: FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (it installs and purges the package on this machine)"

# ---- leftovers of an earlier run, and a refusal to touch a real box ----------------------
daemon_pid=""
own_state=false # /var/lib/posedge was made by this gate
own_user=false  # so was the posedge user
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if dpkg-query -W -f='${Status}' posedge 2>/dev/null | grep -q 'installed'; then
    dpkg --purge posedge >/dev/null || true
  fi
  if $own_state; then rm -rf /var/lib/posedge; fi
  if $own_user; then
    if getent passwd posedge >/dev/null; then userdel posedge 2>/dev/null || true; fi
    if getent group posedge >/dev/null; then groupdel posedge 2>/dev/null || true; fi
  fi
}
trap 'cleanup; rm -rf "$work"' EXIT

if [ -e /var/lib/posedge ] && [ ! -e "$MARKER" ]; then
  fail "/var/lib/posedge exists and was not made by this gate: not touching a real ledger"
fi
if [ -e "$MARKER" ]; then
  echo "+ leftovers of an earlier gate run: purging them first"
  own_state=true
  own_user=true
  cleanup
  own_state=false
  own_user=false
fi
if dpkg-query -W -f='${Status}' posedge 2>/dev/null | grep -q 'installed'; then
  # Installed but no ledger yet (it would have the marker or refuse above): purge.
  echo "+ dpkg --purge posedge (installed by an earlier run)"
  dpkg --purge posedge
fi
# What does not exist now is made by this run, and removed at its end.
getent passwd posedge >/dev/null || own_user=true
[ -e /var/lib/posedge ] || own_state=true

# ---- tools ---------------------------------------------------------------------------------
apt_updated=false
need_apt() {
  if ! $apt_updated; then
    apt-get update -qq
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v lintian >/dev/null || need_apt lintian
command -v systemd-analyze >/dev/null || need_apt systemd
command -v adduser >/dev/null || need_apt adduser
command -v objcopy >/dev/null || need_apt binutils
if [ "$(cargo deb --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_DEB_VERSION" ]; then
  echo "+ cargo install cargo-deb --version $CARGO_DEB_VERSION --locked"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# ---- build -----------------------------------------------------------------------------------
echo "+ cargo deb --locked"
cargo deb --locked | tee "$work/cargo-deb.out"
deb=$(grep -E '\.deb$' "$work/cargo-deb.out" | tail -n 1)
[ -f "$deb" ] || fail "cargo deb printed no .deb path"
echo "package: $deb ($(du -h "$deb" | cut -f1))"

# ---- lintian -----------------------------------------------------------------------------------
echo "+ lintian $deb"
lintian_out=$(lintian --fail-on error "$deb" 2>&1) || lintian_rc=$?
echo "$lintian_out" | grep -v 'running with root privileges' || true
if [ "${lintian_rc:-0}" != 0 ] || echo "$lintian_out" | grep -q '^E: '; then
  fail "lintian reported errors"
fi
echo "lintian: $(echo "$lintian_out" | grep -c '^E: ' || true) errors, $(echo "$lintian_out" | grep -c '^W: ' || true) warnings"

# ---- install ---------------------------------------------------------------------------------
echo "+ dpkg -i (install)"
dpkg -i "$deb"
touch "$MARKER"
echo "+ dpkg -i (again: the reinstall/upgrade path of prerm and postinst)"
dpkg -i "$deb" >/dev/null

[ "$(stat -c '%U:%G %a' "$CONFIG")" = "root:posedge 640" ] ||
  fail "$CONFIG is $(stat -c '%U:%G %a' "$CONFIG"), want root:posedge 640"
[ "$(stat -c '%U:%G %a' /var/lib/posedge)" = "posedge:posedge 750" ] ||
  fail "/var/lib/posedge is $(stat -c '%U:%G %a' /var/lib/posedge), want posedge:posedge 750"
[ "$(getent passwd posedge | cut -d: -f6,7)" = "/var/lib/posedge:/usr/sbin/nologin" ] ||
  fail "posedge user: $(getent passwd posedge)"

# ---- the unit --------------------------------------------------------------------------------
echo "+ systemd-analyze verify $UNIT"
verify_out=$(systemd-analyze verify "$UNIT" 2>&1) || fail "systemd-analyze verify failed: $verify_out"
[ -z "$verify_out" ] || fail "systemd-analyze verify printed: $verify_out"

echo "+ systemd-analyze security --offline=true $UNIT"
security_out=$(systemd-analyze security --offline=true "$UNIT" 2>&1) || true
echo "$security_out" | grep -E '^✗' || true
exposure=$(echo "$security_out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no exposure level in: $security_out"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= $MAX_EXPOSURE else 1)" ||
  fail "exposure $exposure > $MAX_EXPOSURE"
echo "exposure: $exposure (<= $MAX_EXPOSURE)"

# ---- the installed config, as the daemon's user ------------------------------------------------
echo "+ posedge check-config --config $CONFIG (as posedge)"
setpriv --reuid=posedge --regid=posedge --init-groups /usr/bin/posedge check-config --config "$CONFIG"

# ---- the daemon, as the unit would run it (User=posedge, UMask=0077, cwd /) -----------------
listen=$(python3 -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f).get("server", {}).get("listen", "127.0.0.1:8080"))
' "$CONFIG")
host=${listen%:*}
port=${listen##*:}
case "$host" in 0.0.0.0 | "" | "[::]") host=127.0.0.1 ;; esac
url="http://$host:$port/healthz"
log="$work/serve.log"
echo "+ setpriv --reuid=posedge --regid=posedge --init-groups /usr/bin/posedge serve --config $CONFIG"
# sh execs setpriv, which execs posedge: $! is the daemon's pid.
sh -c 'cd / && umask 077 && exec setpriv --reuid=posedge --regid=posedge --init-groups /usr/bin/posedge serve --config "$1"' sh "$CONFIG" >"$log" 2>&1 &
daemon_pid=$!
code=$(python3 - "$url" "$daemon_pid" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 15
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        print("exited")
        sys.exit(0)
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            print(r.status)
            sys.exit(0)
    except urllib.error.HTTPError as e:
        print(e.code)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
print("timeout")
EOF
)
[ "$code" = 200 ] || { cat "$log" >&2; fail "GET $url: $code"; }
echo "GET $url: 200"
who=$(ps -o user=,comm= -p "$daemon_pid" | tr -s ' ')
[ "$who" = "posedge posedge" ] || fail "pid $daemon_pid is '$who', want the posedge daemon as user posedge"
kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=""
[ "$rc" = 0 ] || { cat "$log" >&2; fail "posedge serve exited $rc on SIGTERM"; }
echo "SIGTERM: exit 0"
[ "$(stat -c '%U %a' /var/lib/posedge/posedge.db)" = "posedge 600" ] ||
  fail "posedge.db is $(stat -c '%U %a' /var/lib/posedge/posedge.db), want posedge 600"

# ---- purge keeps the ledger ----------------------------------------------------------------------
echo "+ dpkg --purge posedge"
dpkg --purge posedge
[ ! -e /etc/posedge ] || fail "/etc/posedge survived the purge"
[ -f /var/lib/posedge/posedge.db ] || fail "the purge removed /var/lib/posedge/posedge.db"
echo "purge: /etc/posedge gone, /var/lib/posedge/posedge.db kept"

echo "deb gate: OK (lintian no errors, exposure $exposure, $(($(date +%s) - started)) s)"
# The EXIT trap removes what this run made (the ledger under test, the posedge user).
