#!/bin/bash
# Per-connection cost of one mode's workers and primary: CPU, context switches
# and system calls (perf stat), under the load generator at a fixed number in
# flight. Needs `perf` (Debian: linux-perf) and the rights to attach to the
# processes (root, or kernel.perf_event_paranoid <= 0). Not run by CI.
#
#   bash bench/profile.sh ip               # sticky-session-rs, default IP mode (kernel steering)
#   bash bench/profile.sh ip-accept-loop   # IP routing with kernel: false
#   bash bench/profile.sh none          # cluster SCHED_NONE (the no-balancer limit)
#   IN_FLIGHT=64 SECONDS_MEASURED=10 bash bench/profile.sh ip
#
# With RECORD=1 it also records the workers' call graphs (perf record -g,
# node --perf-basic-prof for JavaScript frames) into the output directory.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: bench/profile.sh ip|ip-accept-loop|header|proxy-protocol|sid|none|rr}
in_flight=${IN_FLIGHT:-8}
measured=${SECONDS_MEASURED:-6}
out=$(mktemp -d -t sticky-profile-XXXXXX)
case $mode in
  none | rr) server=bench/servers/cluster.js ;;
  *) server=bench/servers/sticky-session-rs.js ;;
esac
loadgen=bench/loadgen/target/release/loadgen
[ -x $loadgen ] || cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml
load_args=()
case $mode in
  header) load_args=(--xff --src 127.0.0.1) ;;
  proxy-protocol) load_args=(--proxy-v1 --src 127.0.0.1) ;;
esac
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
node_flags=()
[ "${RECORD:-0}" = 1 ] && node_flags=(--perf-basic-prof "--logfile=$out/v8.log" --no-logfile-per-isolate)
BENCH_PORT=$port BENCH_ROUTING=$mode BENCH_POLICY=$mode node "${node_flags[@]}" $server > "$out/server.out" 2>&1 &
primary=$!
trap 'kill $primary 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ "$(grep -c '"worker"' "$out/server.out")" -ge 2 ] && grep -q '"ready"' "$out/server.out" && break
  sleep 0.2
done
workers=$(grep '"worker"' "$out/server.out" | sed 's/.*"pid":\([0-9]*\).*/\1/' | paste -sd, -)
$loadgen -t 127.0.0.1:$port -c "$in_flight" -n 10000000 -d $((measured + 3)) "${load_args[@]}" > "$out/load.out" 2>&1 &
load=$!
sleep 1.5
events=task-clock,context-switches,raw_syscalls:sys_enter
perf stat -x, -e $events -p "$workers" -- sleep "$measured" 2> "$out/workers.stat" &
perf stat -x, -e $events -p $primary -- sleep "$measured" 2> "$out/primary.stat" &
[ "${RECORD:-0}" = 1 ] && perf record -q -F 1999 -g -p "$workers" -o "$out/workers.data" -- sleep "$measured" > /dev/null 2>&1 &
wait %3 %4 2>/dev/null || true
wait $load
rate=$(sed 's/.*"conn_per_s":\([0-9.]*\).*/\1/' "$out/load.out")
connections=$(awk -v r="$rate" -v s="$measured" 'BEGIN { print r * s }')
echo "$mode, $in_flight in flight: $rate connections/s (output in $out)"
for who in workers primary; do
  awk -F, -v c="$connections" -v who=$who '
    $3 == "task-clock" { cpu = $1 } $3 == "context-switches" { switches = $1 } $3 == "raw_syscalls:sys_enter" { calls = $1 }
    END { printf "  %-8s CPU %5.1f µs   context switches %4.2f   system calls %4.1f   per connection\n", who, cpu * 1000 / c, switches / c, calls / c }
  ' "$out/$who.stat"
done
