#!/usr/bin/env bash
# The load benchmark: ordergate beside nginx, HAProxy and the direct upstream,
# interleaved in one run of the shared harness (../shared/bench/run.sh, see its
# README), for passthrough GET /orders/<id> at 64 and 1000 keep-alive
# connections and with a new connection per request, and for the shorthand
# GET /order with a valid OwnerId (the harness creates the association
# before the load starts), and over HTTPS (TLS 1.3, keep-alive, c64) beside
# nginx's and HAProxy's TLS listeners.
#
#   benches/load.sh                         # every scenario, 5 rounds (~20 min)
#   ROUNDS=3 SCENARIOS=c64 benches/load.sh  # quicker
#
# STORE=redis runs the gateway with its owner store on a redis-server that
# this script starts on 127.0.0.1:${REDIS_PORT:-16379} (no persistence) and
# stops at the end; the default is config/bench.toml's memory store.
#
# Any harness setting (ROUNDS, DURATION, WORKERS, SCENARIOS, OUT, ...) passes
# through. ordergate gets the same worker count as the anchors (WORKERS,
# default 1) through TOKIO_WORKER_THREADS, in `server.worker_mode = "shared"`;
# with WORKERS above 1 and WORKER_MODE=per_core (default shared) it runs that
# many per-core workers instead, like nginx's worker processes:
#
#   WORKERS=2 WORKER_MODE=per_core benches/load.sh
#
# Results: $OUT (default target/bench-results/<timestamp>/), summary.md inside.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench/run.sh}
[[ -x $HARNESS ]] || { echo "load.sh: no harness at $HARNESS (set HARNESS=)" >&2; exit 1; }

cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin ordergate

export SCENARIOS=${SCENARIOS:-c64 c1000 close shorthand tls}
export OUT=${OUT:-$ROOT/target/bench-results/$(date +%Y%m%d-%H%M%S)}
export GATEWAY_NAME=ordergate
export GATEWAY_PORT=18090
# config/bench.toml's TLS listener reads the harness's certificate from here.
export GATEWAY_TLS_PORT=18443
export TLS_DIR=/tmp/ordergate-bench-tls
WORKER_MODE=${WORKER_MODE:-shared}
case $WORKER_MODE in
  shared | per_core) ;;
  *) echo "load.sh: WORKER_MODE is shared or per_core, not '$WORKER_MODE'" >&2; exit 1 ;;
esac
GATEWAY_ENV=
if [[ $WORKER_MODE == per_core && ${WORKERS:-1} -gt 1 ]]; then
  # In the command, so that the harness's summary shows it; `env` execs
  # the gateway, which stays the measured process.
  GATEWAY_ENV="env ORDERGATE_SERVER__WORKER_MODE=per_core ORDERGATE_SERVER__WORKERS=$WORKERS "
fi
export GATEWAY_CMD="$GATEWAY_ENV$ROOT/target/release/ordergate --config $ROOT/config/bench.toml"

case ${STORE:-memory} in
  memory) exec "$HARNESS" ;;
  redis)
    command -v redis-server >/dev/null || { echo "load.sh: redis-server is missing" >&2; exit 1; }
    REDIS_PORT=${REDIS_PORT:-16379}
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >/dev/null &
    redis_pid=$!
    trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null' EXIT
    export ORDERGATE_STORE__KIND=redis ORDERGATE_STORE__URL="redis://127.0.0.1:$REDIS_PORT/0"
    "$HARNESS"
    ;;
  *) echo "load.sh: STORE must be memory or redis" >&2; exit 1 ;;
esac
