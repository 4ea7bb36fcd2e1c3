# Sourced first by the benches that run the gateway in front of the load
# harness's stub backend (callgrind.sh, copies.sh, peak_rss.sh), with ROOT
# set: STUB_CONF (the harness's stub config unless set), and `need TOOL...`,
# which stops the script with a clear message when a tool or the stub's
# config is missing, before anything is built or started.

STUB_CONF=${STUB_CONF:-$ROOT/../shared/bench/conf/upstream-nginx.conf}

need() {
  local script tool
  script=$(basename "$0")
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$script: $tool is missing" >&2; exit 1; }
  done
  [[ -f $STUB_CONF ]] || { echo "$script: no stub config at $STUB_CONF (set STUB_CONF=)" >&2; exit 1; }
}
