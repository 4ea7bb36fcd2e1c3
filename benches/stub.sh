# Sourced by the benches that run the gateway in front of the load harness's
# stub backend (callgrind.sh, peak_rss.sh): the harness's TLS certificate
# (config/bench.toml's TLS listener reads it) when no run has left one, a
# scratch folder RUN, the stub (nginx with STUB_CONF) on 127.0.0.1:18080,
# and `wait_for URL`. Every process put in `pids` is killed at exit, and RUN
# removed.

TLS_DIR=/tmp/ordergate-bench-tls
if [[ ! -f $TLS_DIR/cert.pem || ! -f $TLS_DIR/key.pem ]]; then
  mkdir -p "$TLS_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null
fi
RUN=$(mktemp -d /tmp/ordergate-bench.XXXXXX)
mkdir -p "$RUN/upstream"
sed "s|@RUN@|$RUN|g" "$STUB_CONF" > "$RUN/upstream.conf"
printf '{}' > "$RUN/empty-object.json"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

nginx -c "$RUN/upstream.conf" -p "$RUN" &
pids+=($!)

wait_for() {
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): $1 does not answer" >&2
  exit 1
}
wait_for http://127.0.0.1:18080/
