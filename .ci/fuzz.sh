#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 20), one
# after the other, from its seed corpus in fuzz/corpus/<target>/. New inputs
# go to a scratch corpus under fuzz/target/, crashes to fuzz/artifacts/ (both
# ignored by git); a crash fails the run with libFuzzer's report. Needs the nightly toolchain and cargo-fuzz.
#
#   .ci/fuzz.sh 600              # ten minutes per target
#   .ci/fuzz.sh 60 order_body    # one target
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

cargo +nightly fuzz build
for t in "${targets[@]}"; do
  scratch=target/corpus/$t
  mkdir -p "$scratch"
  echo "== $t: ${secs}s"
  log=target/fuzz-$t.log
  if ! cargo +nightly fuzz run "$t" "$scratch" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  # The last status line: executions, coverage (cov), features (ft), corpus.
  grep -E '^#[0-9]+' "$log" | tail -n 1
done
