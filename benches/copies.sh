#!/usr/bin/env bash
# Copies per request: every `memcpy` and `memmove` the release binary makes
# (moves of requests, answers and futures included, where the compiler
# calls them), counted by a small interposer loaded with LD_PRELOAD, by
# call site, in front of the load harness's stub backend (as callgrind.sh).
# Prints the calls and bytes per request, by size, and the sites that copy
# the most, named with addr2line (the release profile keeps line tables).
#
#   benches/copies.sh                          # passthrough, 20,000 requests
#   N=50000 C=64 SCENARIO=shorthand TOP=40 benches/copies.sh
#
# Scenarios: passthrough (GET of a tracked order), shorthand (GET /order).
# The counts include the gateway's start (a few thousand copies: under
# 0.5 % at N=20000). Counted are the calls the binary makes: moves the
# compiler writes inline (the small ones) are not, and a call reached by a
# tail call is named after its caller's caller. Needs gcc, addr2line
# (binutils), nginx, h2load, curl, openssl and python3.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# STUB_CONF and `need`.
source "$ROOT/benches/need.sh"
N=${N:-20000}
C=${C:-8}
SCENARIO=${SCENARIO:-passthrough}
TOP=${TOP:-25}
GW=http://127.0.0.1:18090
ORDER=00000145ffa79d31de17529f007f000000010001
OWNER=73adb746-2443-4cc8-879e-886348385b9a

need gcc addr2line nginx h2load curl openssl python3
case $SCENARIO in
  passthrough) path=/orders/$ORDER; args=() ;;
  shorthand) path=/order; args=(-H "Cookie: OwnerId=$OWNER") ;;
  *) echo "copies.sh: SCENARIO is passthrough or shorthand" >&2; exit 1 ;;
esac

cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin ordergate
# The stub, RUN and wait_for.
source "$ROOT/benches/stub.sh"

# The interposer: copies forward with `rep movsb` (backward for an
# overlapping memmove), and adds each call to its call site's count.
cat >"$RUN/copies.c" <<'C'
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#define SITES (1 << 16)
static uintptr_t site[SITES];
static uint64_t calls[SITES], bytes[SITES];
static void count(uintptr_t at, size_t n) {
  size_t h = (at * 0x9E3779B97F4A7C15ull) >> 48;
  for (size_t i = 0; i < SITES; i++) {
    size_t j = (h + i) & (SITES - 1);
    uintptr_t seen = __atomic_load_n(&site[j], __ATOMIC_RELAXED);
    if (seen == 0) {
      uintptr_t none = 0;
      if (!__atomic_compare_exchange_n(&site[j], &none, at, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        seen = none;
      else
        seen = at;
    }
    if (seen == at) {
      __atomic_fetch_add(&calls[j], 1, __ATOMIC_RELAXED);
      __atomic_fetch_add(&bytes[j], n, __ATOMIC_RELAXED);
      return;
    }
  }
}
static void *forward(void *d, const void *s, size_t n) {
  void *r = d;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return r;
}
void *memcpy(void *d, const void *s, size_t n) {
  count((uintptr_t)__builtin_return_address(0), n);
  return forward(d, s, n);
}
void *memmove(void *d, const void *s, size_t n) {
  count((uintptr_t)__builtin_return_address(0), n);
  if ((uintptr_t)d <= (uintptr_t)s || (uintptr_t)d >= (uintptr_t)s + n) return forward(d, s, n);
  char *dd = (char *)d + n - 1;
  const char *ss = (const char *)s + n - 1;
  __asm__ volatile("std; rep movsb; cld" : "+D"(dd), "+S"(ss), "+c"(n) : : "memory");
  return d;
}
__attribute__((destructor)) static void report(void) {
  const char *path = getenv("COPIES_OUT");
  FILE *f = path ? fopen(path, "w") : NULL;
  if (!f) return;
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[1024];
  while (maps && fgets(line, sizeof line, maps)) fprintf(f, "MAP %s", line);
  if (maps) fclose(maps);
  for (size_t i = 0; i < SITES; i++)
    if (site[i]) fprintf(f, "S %lx %lu %lu\n", (unsigned long)site[i], (unsigned long)calls[i], (unsigned long)bytes[i]);
  fclose(f);
}
C
gcc -O2 -fPIC -shared -fno-builtin -o "$RUN/copies.so" "$RUN/copies.c"

COPIES_OUT=$RUN/copies.txt LD_PRELOAD=$RUN/copies.so TOKIO_WORKER_THREADS=1 \
  "$ROOT/target/release/ordergate" --config "$ROOT/config/bench.toml" >"$RUN/gateway.log" 2>&1 &
gw=$!
pids+=("$gw")
wait_for "$GW/orders/$ORDER"
# The order becomes a tracked one, the owner's open order.
curl -s -o /dev/null -X POST -H "Cookie: OwnerId=$OWNER" "$GW/orders"
h2load --h1 -n "$N" -c "$C" ${args[@]+"${args[@]}"} "$GW$path" | grep -E '^(requests|status codes):'
# A graceful stop: the interposer writes its counts as the process exits.
kill -TERM "$gw"
wait "$gw" 2>/dev/null || true
[[ -s $RUN/copies.txt ]] || { echo "copies.sh: the gateway left no counts (it did not exit cleanly; see its log)" >&2; cat "$RUN/gateway.log" >&2; exit 1; }

python3 - "$RUN/copies.txt" "$N" "$TOP" <<'PY'
import collections, subprocess, sys
path, n, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
maps, sites = [], []
for line in open(path):
    if line.startswith("MAP "):
        p = line.split()
        lo, hi = (int(x, 16) for x in p[1].split("-"))
        maps.append((lo, hi, int(p[3], 16), p[6] if len(p) > 6 else ""))
    elif line.startswith("S "):
        _, at, c, b = line.split()
        sites.append((int(at, 16), int(c), int(b)))
calls = sum(c for _, c, _ in sites)
total = sum(b for _, _, b in sites)
print(f"copies per request: {calls / n:.1f} calls, {total / n:,.0f} bytes")
# By size, for the sites called at least once every two requests.
by_size = collections.Counter()
bytes_by_size = collections.Counter()
for _, c, b in sites:
    if c >= n / 2:
        k = min(int(b / c) // 64 * 64, 4096)
        by_size[k] += c / n
        bytes_by_size[k] += b / n
print("\n| bytes a copy | calls/request | bytes/request |\n|---|---:|---:|")
for k in sorted(by_size):
    label = f"{k} and more" if k >= 4096 else f"{k}–{k + 63}"
    print(f"| {label} | {by_size[k]:.1f} | {bytes_by_size[k]:,.0f} |")
# The sites, named: the binary's addresses are offsets from its first mapping.
named = collections.defaultdict(list)
for at, c, b in sorted(sites, key=lambda s: -s[2])[:top]:
    for lo, hi, _, file in maps:
        if lo <= at < hi and file.startswith("/"):
            base = min(l for l, _, off, f in maps if f == file and off == 0)
            named[file].append((at - base - 1, c, b))
            break
rows = []
for file, entries in named.items():
    out = subprocess.run(["addr2line", "-a", "-f", "-i", "-C", "-e", file] + [hex(a) for a, _, _ in entries],
                         capture_output=True, text=True).stdout
    for (a, c, b), chunk in zip(entries, out.split("\n0x")):
        lines = chunk.strip().split("\n")[1:]
        frames = [f"{fn.split('::{{closure}}')[0][-70:]} ({loc.rsplit('/', 1)[-1]})"
                  for fn, loc in zip(lines[0::2], lines[1::2])][:2]
        rows.append((b / n, c / n, file.rsplit("/", 1)[-1], " < ".join(frames)))
print(f"\n| bytes/request | calls/request | object | site (innermost first) |\n|---:|---:|---|---|")
for b, c, obj, where in sorted(rows, key=lambda r: -r[0]):
    print(f"| {b:,.0f} | {c:.2f} | {obj} | {where} |")
PY
