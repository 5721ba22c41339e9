#!/usr/bin/env bash
# Load and faults (not run in CI): serves a URL dataset with the Redis key store, runs CLIENTS
# concurrent `sift check` loops (each a fresh device: token, OHTTP, key upload, PIR query) for
# DURATION seconds while it kills and restarts Redis, reloads the dataset (SIGHUP) and sends
# garbage; then prints requests, wrong answers (must be 0), errors by kind and the server's
# resident memory over time.
#
#   scripts/load-fault.sh                  (SIFT=target/release/sift DURATION=60 CLIENTS=4)
#
# Needs: a built sift, redis-server, openssl, curl. Uses Redis port REDIS_PORT (6392).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SIFT=$(realpath "${SIFT:-target/release/sift}")
DURATION=${DURATION:-60}
CLIENTS=${CLIENTS:-4}
REDIS_PORT=${REDIS_PORT:-6392}
[ -x "$SIFT" ] || { echo "build first: cargo build --release -p sift (or set SIFT)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }
work=$(mktemp -d -t sift-fault-XXXX)
server_pid= redis_pid= workers=()
cleanup() {
  for p in "${workers[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
cd "$work"
uc=com.example.app.url.filtering
for i in $(seq 1 200); do echo "blocked$i.example"; done > list.txt
"$SIFT" build list.txt -o dataset > build.log

tls_material fault-ca
port=$((20000 + RANDOM % 20000))
tls_config "$port" fault-token "$uc"
cat >> sift.toml <<TOML
[limits]
issue_per_minute = 0
queries_per_minute = 0
[key_store]
kind = "redis"
url = "redis://127.0.0.1:$REDIS_PORT/"
timeout_ms = 500
TOML

start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no > redis.log 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server did not start" >&2; exit 1
}
start_redis
"$SIFT" serve --config sift.toml > serve.log 2>&1 &
server_pid=$!
wait_listening serve.log 300
base="https://127.0.0.1:$port"
common=(--ca ca.pem --service "$base" --issuer "$base" --gateway "$base"
        --user-token fault-token --usecase "$uc" --prefilter dataset/current/prefilter)
end=$(( $(date +%s) + DURATION ))

worker() { # one device after another; one line per request: ok | wrong | error <reason>
  local n=$1
  while [ "$(date +%s)" -lt "$end" ]; do
    local b=$(( RANDOM % 200 + 1 ))
    if out=$("$SIFT" check "${common[@]}" --json "https://blocked$b.example/" \
        "https://allowed$n-$RANDOM.example/" 2>err.$n); then
      # (here-strings, not `echo | grep -q`: under pipefail an early grep exit fails echo)
      if grep -q "blocked$b.example/\",\"blocked\":true" <<< "$out" \
         && [ "$(grep -c '"blocked":true' <<< "$out")" = 1 ]; then
        echo ok
      else
        echo wrong; echo "$out" >> wrong.log
      fi
    else
      echo "error $(grep -o '[45][0-9][0-9][^0-9]' err.$n | head -1 | tr -dc 0-9 || true)$(grep -q '[45][0-9][0-9][^0-9]' err.$n || echo other)"
    fi
  done > "results.$n"
}
for n in $(seq 1 "$CLIENTS"); do worker "$n" & workers+=($!); done

# Faults and memory samples, every 5 s: Redis killed for 3 s every 15 s, a reload every 10 s,
# garbage every round.
: > rss.log; : > garbage.log; t0=$(date +%s); round=0
while [ "$(date +%s)" -lt "$end" ]; do
  now=$(( $(date +%s) - t0 ))
  echo "$now $(awk '/VmRSS/ {print $2}' /proc/$server_pid/status)" >> rss.log
  if [ $(( round % 3 )) = 1 ]; then
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; sleep 3; start_redis
  fi
  [ $(( round % 2 )) = 1 ] && kill -HUP "$server_pid"
  for path in / /key /queries /config /issue /token-key-for-user-token; do
    head -c $(( RANDOM % 4096 + 1 )) /dev/urandom > garbage.bin
    curl -s -o /dev/null -w "%{http_code}\n" --cacert ca.pem -X POST \
      -H "User-Identifier: garbage" --data-binary @garbage.bin "$base$path" >> garbage.log || echo 000 >> garbage.log
  done
  round=$(( round + 1 )); sleep 5
done
for p in "${workers[@]}"; do wait "$p" || true; done
workers=()
kill -0 "$server_pid" || { echo "the server died" >&2; exit 1; }

cat results.* > all.txt
echo "== $CLIENTS clients, ${DURATION} s, Redis killed $(( (round + 1) / 3 )) times, $(( round / 2 )) reloads"
echo "device checks (2 URLs each): $(wc -l < all.txt)"
echo "ok: $(grep -c '^ok' all.txt || true)"
echo "wrong answers: $(grep -c '^wrong' all.txt || true)"
echo "errors by status:"; grep '^error' all.txt | sort | uniq -c | sed 's/^/  /' || true
echo "garbage requests by status:"; sort garbage.log | uniq -c | sed 's/^/  /'
echo "server resident memory (s KiB):"; sed 's/^/  /' rss.log
echo "work dir: $work"
[ "$(grep -c '^wrong' all.txt || true)" = 0 ]
