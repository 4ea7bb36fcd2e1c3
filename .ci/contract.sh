#!/usr/bin/env bash
# The edge API as a contract: starts the demo (the emulated orders backend and
# the gateway in front of it) on free loopback ports, runs schemathesis
# against it with the OpenAPI document the gateway serves on its admin
# listener (openapi/ordergate.yaml, stateful links included), and stops it.
#
#   .ci/contract.sh                      # the CI run: bounded, fixed seed
#   MAX_EXAMPLES=200 SEED= .ci/contract.sh   # longer, random seed
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=${MAX_EXAMPLES:-30}
seed=${SEED-20261201}
time_bound=${TIME_BOUND_SECS:-900}
venv=target/contract-venv

if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4.32,<5'
fi
cargo build --quiet

work=$(mktemp -d)
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
gw=$(free_port)
up=$(free_port)
admin=$(free_port)
# A generous rate limit on every path, so that every answer carries the
# RateLimit headers the contract describes.
cat >"$work/contract.toml" <<TOML
[server]
listen = "127.0.0.1:$gw"
public_base_url = "http://127.0.0.1:$gw"

[admin]
listen = "127.0.0.1:$admin"

[upstream]
url = "http://127.0.0.1:$up"
rewrite_bases = ["http://coreapi01.ote.chicago.hostway:8092"]

[store]
kind = "memory"

[[rate_limits.rules]]
name = "contract"
paths = ["*"]
key = "client_ip"
rate = 100000
per_secs = 1

[log]
access_log = false
TOML

target/debug/ordergate demo --config "$work/contract.toml" >"$work/demo.log" 2>&1 &
demo=$!
stop() {
  kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
  kill -0 "$demo" 2>/dev/null || { cat "$work/demo.log"; exit 1; }
  sleep 0.1
done

seed_arg=()
[ -n "$seed" ] && seed_arg=(--seed "$seed")
status=0
timeout "$time_bound" "$venv/bin/st" run "http://127.0.0.1:$admin/openapi.yaml" \
  --url "http://127.0.0.1:$gw" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,use_after_free,ensure_resource_availability \
  --max-examples "$max_examples" "${seed_arg[@]}" \
  --workers 1 --request-timeout 10 --no-color \
  --report junit --report-dir target/contract-report || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- demo log (last 40 lines) ---"
  tail -n 40 "$work/demo.log"
fi
exit "$status"
