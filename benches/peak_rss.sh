#!/usr/bin/env bash
# Peak RSS under many connections: the release binary with one worker, in
# front of the load harness's stub backend (nginx with
# ../shared/bench/conf/upstream-nginx.conf), a passthrough GET of a tracked
# order at CONNS keep-alive connections for SECS seconds (wrk, one thread).
# Prints the idle RSS, wrk's rate and the peak (VmHWM). Each connection and
# each request in flight shows here; run it before and after a change, side
# by side, as RSS is noisy on a shared machine.
#
#   benches/peak_rss.sh                    # 1,000 connections, 6 s, twice
#   CONNS=5000 SECS=10 RUNS=1 benches/peak_rss.sh
#   BIN=/tmp/ordergate-before benches/peak_rss.sh
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# STUB_CONF and `need`.
source "$ROOT/benches/need.sh"
CONNS=${CONNS:-1000}
SECS=${SECS:-6}
RUNS=${RUNS:-2}
BIN=${BIN:-}
GW=http://127.0.0.1:18090
ORDER=00000145ffa79d31de17529f007f000000010001

need nginx wrk curl openssl
(( CONNS > 0 && CONNS <= 20000 && SECS > 0 && SECS <= 120 && RUNS > 0 && RUNS <= 10 )) ||
  { echo "peak_rss.sh: CONNS 1–20000, SECS 1–120, RUNS 1–10" >&2; exit 1; }

if [[ -z $BIN ]]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin ordergate
  BIN=$ROOT/target/release/ordergate
fi
# The stub, RUN and wait_for.
source "$ROOT/benches/stub.sh"

# More connections than the default limit of open files need room.
ulimit -n $(( CONNS * 2 + 1024 )) 2>/dev/null || true
for run in $(seq 1 "$RUNS"); do
  TOKIO_WORKER_THREADS=1 "$BIN" --config "$ROOT/config/bench.toml" >"$RUN/gateway.log" 2>&1 &
  gw=$!
  pids+=("$gw")
  wait_for "$GW/orders/$ORDER"
  # The order becomes tracked, as in the harness.
  curl -s -o /dev/null -X POST "$GW/orders"
  idle=$(awk '/^VmRSS/ {print $2}' "/proc/$gw/status")
  rate=$(wrk -t1 -c"$CONNS" -d"${SECS}s" "$GW/orders/$ORDER" | awk '/Requests\/sec/ {print $2}')
  peak=$(awk '/^VmHWM/ {print $2}' "/proc/$gw/status")
  awk -v run="$run" -v idle="$idle" -v rate="$rate" -v peak="$peak" -v conns="$CONNS" 'BEGIN {
    printf "run %d: idle %.1f MiB, %s req/s, peak %.1f MiB at %d connections\n", run, idle / 1024, rate, peak / 1024, conns
  }'
  kill "$gw"
  wait "$gw" 2>/dev/null || true
done
