#!/usr/bin/env bash
# An external TLS audit of the HTTPS listener with testssl.sh (Debian package
# `testssl.sh`), as an operator would run it: a CA and a server certificate
# made with openssl, an OCSP response for it signed by the CA (stapled from a
# file), HSTS on, the emulated backend behind the gateway.
#
#   .ci/testssl.sh [OUT_DIR]
#
# .ci/run runs it (about 3 minutes on 2 cores); README's "TLS audit"
# section has the summary of its last run. Prints the summary lines, leaves
# the full JSON and text reports in OUT_DIR (default: a temp dir), and exits
# 1 when the listener falls short: a protocol besides TLS 1.2/1.3, the
# client's cipher order, no OCSP staple, no HSTS, or any vulnerability.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v testssl >/dev/null || {
  echo "testssl.sh is needed: apt-get install testssl.sh" >&2
  exit 2
}
out=${1:-$(mktemp -d)}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --bin ordergate
bin=target/debug/ordergate

# A CA, a server certificate for localhost (ECDSA P-256), and an OCSP
# response saying it is good, valid for a week.
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 398 \
  -subj "/CN=ordergate test CA" -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout key.pem -out server.csr 2>/dev/null
cat > ext.cnf <<'EOF'
subjectAltName=DNS:localhost
extendedKeyUsage=serverAuth
authorityInfoAccess=OCSP;URI:http://127.0.0.1:1/ocsp
EOF
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
  -extfile ext.cnf -out cert.pem 2>/dev/null
cat cert.pem ca.pem > chain.pem
serial=$(openssl x509 -in cert.pem -noout -serial | cut -d= -f2)
expiry=$(openssl x509 -in cert.pem -noout -enddate | cut -d= -f2)
printf 'V\t%s\t\t%s\tunknown\t/CN=localhost\n' \
  "$(date -u -d "$expiry" +%y%m%d%H%M%SZ)" "$serial" > index.txt
openssl ocsp -issuer ca.pem -cert cert.pem -reqout ocsp.req -no_nonce 2>/dev/null
openssl ocsp -index index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem \
  -reqin ocsp.req -respout ocsp.der -ndays 7 2>/dev/null
cd - >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(port)
gateway=$(port)
cat > "$work/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$gateway"
public_base_url = "https://localhost:$gateway"
tls = { cert_path = "$work/chain.pem", key_path = "$work/key.pem", ocsp_path = "$work/ocsp.der", hsts_max_age_secs = 63072000, hsts_include_subdomains = true }
[upstream]
url = "http://127.0.0.1:$backend"
[store]
kind = "memory"
EOF
"$bin" emulate-backend --listen "127.0.0.1:$backend" >"$work/backend.log" 2>&1 &
pids+=($!)
"$bin" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -sk -o /dev/null "https://localhost:$gateway/" && break
  sleep 0.2
done

# --ip one: localhost only; --warnings batch: no questions asked.
testssl --quiet --color 0 --warnings batch --ip 127.0.0.1 --add-ca "$work/ca.pem" \
  --jsonfile "$out/testssl.json" --logfile "$out/testssl.log" \
  "https://localhost:$gateway/" >/dev/null || true

python3 - "$out/testssl.json" <<'EOF'
import json, sys
findings = json.load(open(sys.argv[1]))
def by(prefix):
    return [f for f in findings if f["id"].startswith(prefix)]
print("protocols offered:", ", ".join(
    f["id"].replace("_", " ").replace("TLS1 ", "TLS 1.") for f in findings
    if f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
    and f["finding"].startswith("offered")))
for key in ("cipher_order", "OCSP_stapling", "HSTS", "HSTS_time", "HSTS_subdomains", "overall_grade"):
    for f in findings:
        if f["id"] == key:
            print(f"{key}: {f['finding']}")
vulns = ["heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
         "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
         "LOGJAM", "BEAST", "LUCKY13", "RC4"]
bad = [f for f in findings if f["id"] in vulns and f["severity"] not in ("OK", "INFO")]
print("vulnerabilities checked:", len([f for f in findings if f["id"] in vulns]),
      "- found:", ", ".join(f"{f['id']} ({f['severity']}: {f['finding']})" for f in bad) or "none")
worst = [f for f in findings if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
for f in worst:
    print(f"{f['severity']}: {f['id']}: {f['finding']}")
finding = {f["id"]: f["finding"] for f in findings}
offered = {f["id"] for f in findings
           if f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
           and f["finding"].startswith("offered")}
short = [what for what, ok in (
    ("protocols other than TLS 1.2 and 1.3", offered == {"TLS1_2", "TLS1_3"}),
    ("the server's cipher order", finding.get("cipher_order", "").startswith("server")),
    ("an OCSP staple", finding.get("OCSP_stapling", "").startswith("offered")),
    ("HSTS", "HSTS_time" in finding),
    ("no vulnerability", not bad),
) if not ok]
if short:
    print("the audit failed on:", ", ".join(short))
    sys.exit(1)
EOF
echo "full reports: $out/testssl.json, $out/testssl.log"
