#!/usr/bin/env bash
# The soak run: the release binary in front of the emulated backend (two
# processes), mixed traffic for MINUTES minutes, and the gateway's resident
# memory and open file descriptors printed every 10 s. Fails when either
# grew past its tolerance between the end of the warm-up and the end.
#
#   benches/soak.sh                    # 2 minutes
#   MINUTES=30 benches/soak.sh         # a longer run
#
# The traffic, all at once: wrk on CONNS kept-alive connections cycling
# through passthrough reads, the /order shorthand, implicit creations and
# updates on a fixed set of owners, 409s, 401s, upstream 404s; a curl loop
# with a new connection per request; a loop of malformed requests and TLS
# hellos on the plain port; and silent connections that the deadlines close.
#
# Settings: MINUTES (2), CONNS (64), WARMUP_SECS (30), RSS_TOLERANCE_PCT (25),
# FD_TOLERANCE (32), PORT (18200; the backend gets PORT+1), BIN (default:
# builds and uses target/release/ordergate). Needs wrk and curl (Debian:
# apt-get install wrk curl). Not run by CI.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINUTES=${MINUTES:-2}
CONNS=${CONNS:-64}
WARMUP_SECS=${WARMUP_SECS:-30}
RSS_TOLERANCE_PCT=${RSS_TOLERANCE_PCT:-25}
FD_TOLERANCE=${FD_TOLERANCE:-32}
PORT=${PORT:-18200}
BACKEND_PORT=$((PORT + 1))
GW=http://127.0.0.1:$PORT
AUTH='Authorization: Basic cXdlQHBhcnRuZXJfYXBpX2RldmVsb3Blcl91c19tYWluOml1MzR0OGhm'

for tool in wrk curl; do
  command -v $tool >/dev/null 2>&1 || { echo "soak.sh: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
if [[ -z ${BIN:-} ]]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin ordergate
  BIN=$ROOT/target/release/ordergate
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/ordergate.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
public_base_url = "$GW"
header_read_timeout_ms = 5000
[upstream]
url = "http://127.0.0.1:$BACKEND_PORT"
rewrite_bases = ["http://coreapi01.ote.chicago.hostway:8092"]
[store]
kind = "redb"
path = "$WORK/owners.redb"
[log]
access_log = false
EOF

RUST_LOG=warn "$BIN" emulate-backend --listen 127.0.0.1:$BACKEND_PORT \
  --base-url http://coreapi01.ote.chicago.hostway:8092 >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
RUST_LOG=warn "$BIN" --config "$WORK/ordergate.toml" >"$WORK/gateway.log" 2>&1 &
GATEWAY=$!
PIDS+=($GATEWAY)
for _ in $(seq 50); do
  curl -s -o /dev/null "$GW/status" && break
  sleep 0.2
done

# A fixed set of owners, each with an open order, made by implicit creation.
OWNERS=()
for i in $(seq 16); do
  owner=$(curl -s -o /dev/null -D - -X PUT "$GW/order/account" -H "$AUTH" \
    -H 'Content-Type: application/json' -d '{"currency":"USD"}' |
    sed -n 's/^[Ss]et-[Cc]ookie: OwnerId=\([^;]*\);.*/\1/p' | head -1)
  [[ -n $owner ]] || { echo "soak.sh: implicit creation failed" >&2; exit 1; }
  OWNERS+=("$owner")
done
# An explicit order, read by its own owner.
HEAD=$(curl -s -o /dev/null -D - -X POST "$GW/orders" -H "$AUTH" | tr -d '\r')
ORDER=$(sed -n 's/^[Ll]ocation: //p' <<<"$HEAD")
ORDER_PATH=/orders/${ORDER##*/orders/}
ORDER_OWNER=$(sed -n 's/^[Ss]et-[Cc]ookie: OwnerId=\([^;]*\);.*/\1/p' <<<"$HEAD" | head -1)
[[ -n $ORDER_OWNER && $ORDER_PATH != /orders/ ]] || { echo "soak.sh: explicit creation failed" >&2; exit 1; }

cat >"$WORK/mix.lua" <<'EOF'
local owners = {}
for o in string.gmatch(os.getenv("SOAK_OWNERS"), "[^,]+") do owners[#owners + 1] = o end
local order = os.getenv("SOAK_ORDER")
local auth = os.getenv("SOAK_AUTH")
local order_owner = "OwnerId=" .. os.getenv("SOAK_ORDER_OWNER")
local n = 0
request = function()
  n = n + 1
  local owner = "OwnerId=" .. owners[(n % #owners) + 1]
  local k = n % 10
  if k < 3 then
    return wrk.format("GET", order, { Cookie = order_owner, Authorization = auth })
  elseif k < 5 then
    return wrk.format("GET", "/order", { Cookie = owner, Authorization = auth })
  elseif k == 5 then
    return wrk.format("PUT", "/order/account",
      { Cookie = owner, Authorization = auth, ["Content-Type"] = "application/json" },
      '{"currency":"USD","language":"en-US"}')
  elseif k == 6 then
    return wrk.format("POST", "/order/product",
      { Cookie = owner, Authorization = auth, ["Content-Type"] = "application/json" },
      '{"productSpec":"exchange"}')
  elseif k == 7 then
    return wrk.format("POST", "/orders", { Cookie = owner, Authorization = auth })
  elseif k == 8 then
    return wrk.format("GET", "/order", { Cookie = "OwnerId=not-a-uuid" })
  else
    return wrk.format("GET", "/no/such/thing")
  end
end
EOF

SECS=$((MINUTES * 60))
END=$((SECONDS + SECS))
owners_csv=$(IFS=,; echo "${OWNERS[*]}")
SOAK_OWNERS=$owners_csv SOAK_ORDER=$ORDER_PATH SOAK_ORDER_OWNER=$ORDER_OWNER SOAK_AUTH=${AUTH#Authorization: } \
  wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$WORK/mix.lua" "$GW" >"$WORK/wrk.txt" 2>&1 &
PIDS+=($!)
# A new connection per request.
(while ((SECONDS < END)); do
  curl -s -o /dev/null --max-time 5 "$GW$ORDER_PATH" -H "$AUTH" -b "OwnerId=$ORDER_OWNER" || true
done) &
PIDS+=($!)
# Malformed heads, TLS hellos on the plain port, and silent connections.
(while ((SECONDS < END)); do
  { printf 'GET /x HTTP/1.1\r\nno colon here\r\n\r\n' >&3; timeout 2 cat <&3 >/dev/null; } \
    3<>/dev/tcp/127.0.0.1/$PORT 2>/dev/null || true
  { printf '\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00' >&3; timeout 2 cat <&3 >/dev/null; } \
    3<>/dev/tcp/127.0.0.1/$PORT 2>/dev/null || true
  { timeout 7 cat <&3 >/dev/null; } 3<>/dev/tcp/127.0.0.1/$PORT 2>/dev/null &
  sleep 0.2
done; wait) &
PIDS+=($!)

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GATEWAY/status"; }
fds() { find "/proc/$GATEWAY/fd" -mindepth 1 -maxdepth 1 | wc -l; }

echo "soak: ${MINUTES} min against $BIN (pid $GATEWAY), $CONNS wrk connections + churn + malformed + silent"
printf '%6s %10s %6s\n' t rss_mib fds
base_rss='' base_fds='' last_rss=0 last_fds=0 t=0
while ((t < SECS)); do
  sleep 10
  t=$((t + 10))
  kill -0 "$GATEWAY" 2>/dev/null || { echo "soak.sh: the gateway died" >&2; exit 1; }
  last_rss=$(rss_kib)
  last_fds=$(fds)
  printf '%5ss %10s %6d\n' "$t" "$(awk -v k="$last_rss" 'BEGIN {printf "%.1f", k / 1024}')" "$last_fds"
  if [[ -z $base_rss ]] && ((t >= WARMUP_SECS)); then
    base_rss=$last_rss
    base_fds=$last_fds
  fi
done
wait "${PIDS[2]}" 2>/dev/null || true
echo "--- wrk"
cat "$WORK/wrk.txt"
[[ -n $base_rss ]] || { echo "soak.sh: the run ended within the warm-up; nothing compared"; exit 0; }
max_rss=$((base_rss + base_rss * RSS_TOLERANCE_PCT / 100))
max_fds=$((base_fds + FD_TOLERANCE))
echo "--- after warm-up: rss $((base_rss / 1024)) MiB, $base_fds fds; at the end: rss $((last_rss / 1024)) MiB, $last_fds fds"
status=0
if ((last_rss > max_rss)); then
  echo "soak.sh: FAIL: resident memory grew past ${RSS_TOLERANCE_PCT}%" >&2
  status=1
fi
if ((last_fds > max_fds)); then
  echo "soak.sh: FAIL: open file descriptors grew by more than $FD_TOLERANCE" >&2
  status=1
fi
((status == 0)) && echo "soak: ok"
exit $status
