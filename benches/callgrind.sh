#!/usr/bin/env bash
# The per-request cost budget: user-space instructions and heap allocations
# per request, counted by callgrind on the release binary with one worker, in
# front of the load harness's stub backend (nginx with
# ../shared/bench/conf/upstream-nginx.conf). Counts do not depend on the
# machine's load, so every change can show its cost.
#
#   benches/callgrind.sh                 # every scenario, 3,000 requests each
#   N=1000 SCENARIOS="passthrough shorthand" benches/callgrind.sh
#
# Scenarios: passthrough (GET of a tracked order), shorthand (GET /order),
# conflict (POST /orders by an owner whose order is open: 409), fault (an
# upstream 404 normalised to the fault shape). Each runs N requests over 8
# keep-alive connections after 300 warm-up requests. Not by default: c64
# and c1000 (the passthrough over 64 and 1000 connections, as the load
# harness's; each load opens its connections anew, so at c1000 take N well
# above 1000, e.g. N=20000, or connection set-up counts too), close
# (the passthrough GET on a new connection per request, as the load
# harness's close scenario; wrk for about N requests' time, counted as wrk
# reports) and tls (the passthrough GET over HTTPS, kept connections, as
# the harness's tls scenario; wrk, counted the same way). Needs valgrind, nginx, h2load (nghttp2-client) and wrk. Prints a table; the raw callgrind files stay
# in $OUT (default target/callgrind/).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# STUB_CONF and `need`.
source "$ROOT/benches/need.sh"
N=${N:-3000}
SCENARIOS=${SCENARIOS:-passthrough shorthand conflict fault}
OUT=${OUT:-$ROOT/target/callgrind}
GW=http://127.0.0.1:18090
ORDER=00000145ffa79d31de17529f007f000000010001
OWNER=73adb746-2443-4cc8-879e-886348385b9a

need valgrind callgrind_control nginx h2load wrk curl openssl

cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin ordergate
mkdir -p "$OUT"
# c1000: the gateway (with valgrind's own descriptors) and h2load hold
# over a thousand sockets each.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The stub, RUN and wait_for.
source "$ROOT/benches/stub.sh"

# Requests of a scenario: h2load arguments after the URL.
load() {
  local n=$1 scenario=$2
  case $scenario in
    passthrough) h2load --h1 -n "$n" -c 8 "$GW/orders/$ORDER" ;;
    # The passthrough over 64 and 1000 connections, as the load harness's
    # c64 and c1000 (at c1000, more requests in flight than the upstream
    # pool's connections: some wait for one).
    c64) h2load --h1 -n "$n" -c 64 "$GW/orders/$ORDER" ;;
    # (At least one request per connection: the warm-up too.)
    c1000) h2load --h1 -n "$(( n > 1000 ? n : 1000 ))" -c 1000 "$GW/orders/$ORDER" ;;
    shorthand) h2load --h1 -n "$n" -c 8 -H "Cookie: OwnerId=$OWNER" "$GW/order" ;;
    conflict) h2load --h1 -n "$n" -c 8 -d "$RUN/empty-object.json" -H "Cookie: OwnerId=$OWNER" "$GW/orders" ;;
    fault) h2load --h1 -n "$n" -c 8 "$GW/nothing-here" ;;
    # A new connection per request, for about n requests' time (wrk, which
    # reconnects; the count is what it reports).
    close) wrk -t1 -c4 -d"$(( n / 250 + 1 ))s" -H 'Connection: close' "$GW/orders/$ORDER" ;;
    # The passthrough GET over HTTPS (TLS 1.3, kept connections), as the
    # load harness's tls scenario; counted as wrk reports.
    tls) wrk -t1 -c8 -d"$(( n / 1000 + 1 ))s" "https://127.0.0.1:18443/orders/$ORDER" ;;
  esac >"$OUT/$scenario.h2load.txt"
}

# Requests the last load of a scenario made.
made() {
  local scenario=$1
  case $scenario in
    close | tls) awk '/requests in/ { print $1 }' "$OUT/$scenario.h2load.txt" ;;
    c1000) echo $(( N > 1000 ? N : 1000 )) ;;
    *) echo "$N" ;;
  esac
}

printf '| scenario | instructions/request | allocations/request |\n|---|---:|---:|\n'
for scenario in $SCENARIOS; do
  rm -f "$OUT/callgrind.$scenario".*
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$scenario.%p" \
    "$ROOT/target/release/ordergate" --config "$ROOT/config/bench.toml" >"$OUT/$scenario.log" 2>&1 &
  vg=$!
  pids+=("$vg")
  wait_for "$GW/orders/$ORDER"
  # The order becomes a tracked one, the owner's open order.
  curl -s -o /dev/null -X POST -H "Cookie: OwnerId=$OWNER" "$GW/orders"
  load 300 "$scenario"
  callgrind_control -z "$vg" >/dev/null
  load "$N" "$scenario"
  callgrind_control -d "$vg" >/dev/null
  kill "$vg"
  wait "$vg" 2>/dev/null || true
  dump=$(ls -t "$OUT/callgrind.$scenario".*.1 2>/dev/null | head -n 1)
  python3 - "$dump" "$(made "$scenario")" "$scenario" <<'PY'
import re, sys
path, n, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
total = 0
allocs = 0
names = {}
callee = None
with open(path) as f:
    for line in f:
        if line.startswith("summary:") or line.startswith("totals:"):
            total = int(line.split()[1])
        d = re.match(r"fn=\((\d+)\) (.*)", line)
        if d:
            names[d.group(1)] = d.group(2).strip()
        m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2).strip()
            callee = names.get(m.group(1), "")
            continue
        if line.startswith("calls=") and callee is not None:
            if callee in ("malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "mi_malloc_aligned", "mi_zalloc_aligned", "mi_realloc_aligned", "mi_malloc", "mi_zalloc", "mi_realloc"):
                allocs += int(line.split()[0][6:])
            callee = None
print(f"| {scenario} | {total / n / 1000:.1f}k | {allocs / n:.1f} |")
PY
done
