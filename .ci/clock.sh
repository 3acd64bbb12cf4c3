#!/usr/bin/env bash
# Runs tests/clock.rs: the real `posedge` binary under libfaketime (Debian `faketime`), its
# wall clock stepped while it runs (−1 h, back before the last sale, +25 h, +3 days) with
# its monotonic clock left alone, against the fake Stripe and the fake back office.
#
# The tests are #[ignore]d under plain `cargo test`; here they run with --ignored, and
# POSEDGE_REQUIRE_FAKETIME=1 turns "libfaketime missing, skipped" into a failure.
# Needs root for apt-get when faketime is not installed. About 45 s on 2 cores after the build
# (the test binary is the one `cargo test --locked` already built).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -L libfaketime >/dev/null 2>&1; then
  echo "+ apt-get install -y faketime"
  apt-get update
  apt-get install -y faketime
fi
lib=$(dpkg -L libfaketime | grep '/libfaketime\.so\.1$' | head -n 1 || true)
echo "libfaketime: ${lib:-not found} ($(dpkg-query -W -f='${Version}' libfaketime 2>/dev/null || echo '?'))"

export POSEDGE_REQUIRE_FAKETIME=1
if [ -n "$lib" ]; then
  export POSEDGE_LIBFAKETIME="$lib"
fi
echo "+ cargo test --locked --test tests clock:: -- --ignored"
cargo test --locked --test tests clock:: -- --ignored
