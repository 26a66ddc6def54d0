#!/usr/bin/env bash
# Fuzz smoke run, for CI: builds every cargo-fuzz target and runs each for a
# few seconds, two at a time on a 2-core machine. Installs cargo-fuzz into
# ~/.cargo/bin when it is missing.
#
#   bash fuzz/smoke.sh
#   FUZZ_SECONDS=60 bash fuzz/smoke.sh      # longer
#
# FUZZ_SECONDS: seconds of fuzzing per target (default 10).
# FUZZ_JOBS: targets run at the same time (default: the number of cores).
# Exits 1 when a target finds a crash: its input is saved under
# fuzz/artifacts/<target>/ and the log names the invariant it broke
# (fuzz/README.md says how to reproduce it).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-10}
jobs=${FUZZ_JOBS:-$(nproc)}
cargo_fuzz_version=0.13.2

started=$(date +%s)
# libfuzzer-sys compiles libFuzzer with the C++ compiler the cc crate picks.
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
  echo "fuzz smoke: no C++ compiler (${CXX:-c++}) to build libFuzzer with: apt-get install g++" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi
# --sanitizer none: stable Rust cannot build AddressSanitizer (-Zsanitizer).
cargo fuzz build --sanitizer none
built=$(date +%s)

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_target() {
  local target=$1
  if cargo fuzz run "$target" --sanitizer none -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$logs/$target.log" 2>&1; then
    echo ok >"$logs/$target.status"
  else
    echo failed >"$logs/$target.status"
  fi
}

targets=$(cargo fuzz list)
running=0
for target in $targets; do
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait

failed=0
for target in $targets; do
  log=$logs/$target.log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  coverage=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -1)
  if [[ $(cat "$logs/$target.status") == ok ]]; then
    printf '%-18s ok      %9s runs  %s\n' "$target" "${runs:-?}" "$coverage"
  else
    failed=1
    printf '%-18s FAILED\n' "$target"
    # The broken invariant (or other panic) and how to reproduce it.
    {
      awk '/panicked at/ { show = 1 } /^(note: |stack backtrace:)/ { show = 0 } show' "$log" | head -20
      grep -A2 '^Reproduce with:' "$log" | grep -v '^\s*$'
    } | sed 's/^/    /'
  fi
done
finished=$(date +%s)
echo "fuzz smoke: install and build $((built - started)) s, fuzzing $((finished - built)) s (${seconds} s per target, $jobs at a time)"
exit $failed
