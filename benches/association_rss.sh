#!/usr/bin/env bash
# Memory per association through the whole gateway: the release binary in
# front of the emulated backend (no create delay), owners created one after
# another by `POST /orders` with no cookie (each request makes a new owner and
# one open order), and the gateway's resident memory printed after each step.
# Prints the bytes per owner from the idle gateway and the marginal slope
# between steps (what one more association costs once the bounded memos are
# full).
#
#   benches/association_rss.sh                       # 60,000 then 200,000 owners, redb store
#   OWNERS="100000 1000000" STORE=memory benches/association_rss.sh
#
# Settings: OWNERS (cumulative counts, "60000 200000"), STORE (redb or
# memory; redb), CONNS (16 connections), PORT (18300; the backend gets
# PORT+1), BIN (default: builds and uses target/release/ordergate). Needs
# h2load (nghttp2-client) and curl. Not run by CI.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OWNERS=${OWNERS:-60000 200000}
STORE=${STORE:-redb}
CONNS=${CONNS:-16}
PORT=${PORT:-18300}
BACKEND_PORT=$((PORT + 1))
GW=http://127.0.0.1:$PORT

for tool in h2load curl; do
  command -v $tool >/dev/null 2>&1 || { echo "association_rss.sh: $tool is needed (apt-get install nghttp2-client curl)" >&2; exit 1; }
done
case $STORE in
  redb | memory) ;;
  *) echo "association_rss.sh: STORE is redb or memory, not $STORE" >&2; exit 1 ;;
esac
if [[ -z ${BIN:-} ]]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin ordergate
  BIN=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/ordergate
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

{
  cat <<EOF
[server]
listen = "127.0.0.1:$PORT"
public_base_url = "$GW"
[upstream]
url = "http://127.0.0.1:$BACKEND_PORT"
rewrite_bases = ["http://127.0.0.1:$BACKEND_PORT"]
pool_max_idle_per_host = 64
[store]
kind = "$STORE"
EOF
  [[ $STORE == redb ]] && echo "path = \"$WORK/owners.redb\""
  cat <<EOF
[log]
access_log = false
EOF
} >"$WORK/ordergate.toml"

RUST_LOG=warn "$BIN" emulate-backend --listen 127.0.0.1:$BACKEND_PORT \
  --base-url http://127.0.0.1:$BACKEND_PORT >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
RUST_LOG=warn "$BIN" --config "$WORK/ordergate.toml" >"$WORK/gateway.log" 2>&1 &
GATEWAY=$!
PIDS+=($GATEWAY)
for _ in $(seq 100); do
  curl -s -o /dev/null "$GW/status" && break
  sleep 0.2
done
curl -s -o /dev/null "$GW/status" || { echo "association_rss.sh: the gateway did not start" >&2; cat "$WORK/gateway.log" >&2; exit 1; }

# h2load posts this body (it cannot send an empty one from a file).
printf '{}' >"$WORK/body.json"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$GATEWAY/status"; }
# calc DECIMALS EXPRESSION
calc() { awk "BEGIN { printf \"%.$1f\", $2 }"; }

# One request of each kind first, so the idle figure includes the code and
# buffers every request touches rather than crediting them to the owners.
curl -s -o /dev/null -X POST "$GW/orders"
sleep 1
IDLE=$(rss_kib)
printf 'store %s, idle gateway: %s MiB RSS\n\n' "$STORE" "$(calc 1 "$IDLE / 1024")"
printf '| owners | RSS MiB | bytes per owner (from idle) | marginal bytes per owner | creations/s |\n'
printf '|---:|---:|---:|---:|---:|\n'

done_owners=1
prev_rss=$IDLE
prev_owners=1
for target in $OWNERS; do
  n=$((target - done_owners))
  ((n > 0)) || continue
  start=$(date +%s.%N)
  out=$(h2load --h1 -n "$n" -c "$CONNS" -m 1 -d "$WORK/body.json" \
    -H 'Content-Type: application/json' "$GW/orders" 2>&1) || true
  secs=$(calc 3 "$(date +%s.%N) - $start")
  created=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
  if [[ ${created:-0} != "$n" ]]; then
    echo "association_rss.sh: $n creations asked, ${created:-0} answered 2xx" >&2
    echo "$out" | tail -8 >&2
    exit 1
  fi
  done_owners=$target
  sleep 1
  rss=$(rss_kib)
  printf '| %d | %s | %s | %s | %s |\n' "$target" "$(calc 1 "$rss / 1024")" \
    "$(calc 0 "($rss - $IDLE) * 1024 / $target")" \
    "$(calc 0 "($rss - $prev_rss) * 1024 / ($target - $prev_owners)")" \
    "$(calc 0 "$n / $secs")"
  prev_rss=$rss
  prev_owners=$target
done
