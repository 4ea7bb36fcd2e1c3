#!/usr/bin/env bash
# Checks packaging/ordergate.service with `systemd-analyze verify` against a
# scratch root holding the built binary (verify insists that ExecStart's
# program exists) and the system's own units; prints its exposure score.
# Usage: packaging/verify-unit.sh [path/to/ordergate]  (default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/ordergate}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp "$bin" "$root/usr/local/bin/ordergate"
cp /bin/kill "$root/bin/kill"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp packaging/ordergate.service "$root/etc/systemd/system/"
systemd-analyze verify --root="$root" --man=no ordergate.service
systemd-analyze security --offline=yes --root="$root" ordergate.service | tail -1
echo "packaging/ordergate.service: verified"
