#!/usr/bin/env bash
# The README's operator path on loopback: build lists, generate a test certificate (a leaf
# signed by a test CA, as docs/deploy.md shows), check the config, serve with TLS, and check that
# a listed URL is blocked and an unlisted one allowed, through tokens and the OHTTP gateway.
#   SIFT=target/debug/sift docs/quickstart.sh      (default: `sift` from PATH)
set -euo pipefail
SIFT=${SIFT:-sift}
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
uc=com.example.app.url.filtering

echo "== lists (with Apple's test entry)"
printf 'www.apple.com/url-filter-test\nads.example\n||tracker.example^$third-party\n' > list.txt
"$SIFT" build list.txt -o dataset

echo "== test certificate for 127.0.0.1 (leaf signed by a test CA)"
tls_material quickstart-ca

port=$((20000 + RANDOM % 20000))
tls_config "$port" quickstart-token "$uc"
"$SIFT" serve --config sift.toml --check-config

echo "== serve"
"$SIFT" serve --config sift.toml > serve.log 2>&1 &
server_pid=$!
wait_listening serve.log 100
base="https://127.0.0.1:$port"

echo "== prefilter delivery"
curl -sf --cacert ca.pem "$base/prefilter/$uc"; echo

echo "== check, as a device does"
common=(--ca ca.pem --service "$base" --issuer "$base" --gateway "$base"
        --user-token quickstart-token --usecase "$uc" --prefilter dataset/current/prefilter)
"$SIFT" check "${common[@]}" --json https://ads.example/ https://tracker.example/x \
  https://www.apple.com/url-filter-test https://allowed.example/ > results.jsonl
cat results.jsonl
blocked=$(grep -c '"blocked":true' results.jsonl || true)
[ "$blocked" = 3 ] || { echo "expected 3 blocked URLs, got $blocked"; exit 1; }
grep -q '"url":"https://allowed.example/".*"blocked":false' results.jsonl \
  || grep -q '"blocked":false.*allowed.example' results.jsonl \
  || { echo "allowed.example should be allowed"; exit 1; }
if grep -q $'\x1b\[' serve.log; then echo "colour codes in a log file"; exit 1; fi
grep -q "listening on https://" serve.log || { echo "serve did not log its address"; exit 1; }
echo "quickstart: ok"
