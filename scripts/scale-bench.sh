#!/usr/bin/env bash
# Datasets at scale (not run in CI): build, serve and update synthetic URL lists and print the
# figures of docs/performance.md ("Datasets at scale") with Apple issue 30's hours beside them.
#
#   scripts/scale-bench.sh [ROWS...]        default: 100000 10000000
#   WORK=/big/disk scripts/scale-bench.sh 100000 10000000 100000000
#   UPDATES=0 ...   skip the `sift update` columns
#
# The update columns are "seconds of sift update / seconds until the running server answers
# from the new version" (SIGHUP after the update, then /metrics names the new version),
# measured once the server has finished checking its shards after the start.
#   CLEAN=1 ...     remove each size's files once its row is printed (disk: 100M rows need
#                   about 50 GB while they exist)
#
# Needs: a release build (cargo build --release -p sift), GNU time (/usr/bin/time), curl.
set -euo pipefail

if [ $# -gt 0 ]; then ROWS=("$@"); else ROWS=(100000 10000000); fi
WORK=${WORK:-$(mktemp -d -t sift-scale-XXXX)}
SIFT=${SIFT:-target/release/sift}
PORT=${PORT:-18443}
[ -x "$SIFT" ] || { echo "build first: cargo build --release -p sift" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }

gen() { # gen N OFFSET > file : N synthetic scheme-less URLs
  awk -v n="$1" -v o="$2" 'BEGIN { for (i = o; i < o + n; i++) printf "host%d.example%d.com/p/%d\n", i, i % 997, i % 13 }'
}

measure() { # measure LOG CMD... : runs CMD under GNU time, prints "seconds peak_MiB"
  local log=$1; shift
  /usr/bin/time -f '%e %M' -o "$log.time" "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$log.time"
}

echo "$(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-11s %-9s %-10s %-9s %-14s %-10s %-9s %-20s %-20s\n' rows build_s build_MiB disk_MiB \
  serve_ready_s serve_MiB query_ms update10k_s/served update1M_s/served
for n in "${ROWS[@]}"; do
  d=$WORK/ds-$n; mkdir -p "$d"
  gen "$n" 0 >"$d/list.txt"
  read -r bs bm < <(measure "$d/build.log" "$SIFT" build "$d/list.txt" -o "$d/data" --trials-per-shard 3)
  q=$(sed -n 's/.*expected server time per query.*: \([0-9.]*\) ms/\1/p' "$d/build.log")
  disk=$(du -sm "$d/data/current/" | cut -f1)

  cat >"$d/sift.toml" <<TOML
listen = "127.0.0.1:$PORT"
dev_plain_http = true
require_tokens = false
state_dir = "$d/state"
[[usecases]]
name = "com.example.scale.url.filtering"
dataset_dir = "$d/data"
TOML
  t0=$(date +%s.%N)
  "$SIFT" serve --config "$d/sift.toml" --poll-secs 0 >"$d/serve.log" 2>&1 &
  spid=$!
  until curl -sf -o /dev/null -X POST -H 'User-Identifier: bench' -H 'User-Agent: bench' \
      "http://127.0.0.1:$PORT/config" --data-binary ''; do
    kill -0 $spid 2>/dev/null || { cat "$d/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  ready=$(echo "$(date +%s.%N) - $t0" | bc)
  rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' /proc/$spid/status)
  # Updates are timed against a server in its steady state: wait until the startup check of
  # every shard's checksum (a background thread, minutes at 100M rows) is over, i.e. until
  # the server uses no CPU for a second. A reload then hashes only the files that are new.
  cpu() { awk '{ print $14 + $15 }' /proc/$spid/stat; }
  prev=-1
  while now=$(cpu) && [ "$now" != "$prev" ]; do prev=$now; sleep 1; done

  # An update counts until the running server answers from it: `sift update`, then SIGHUP,
  # then /metrics names the new version.
  update() { # update LOG ARGS... : prints "update_seconds served_seconds"
    local log=$1; shift
    local t0 u id
    t0=$(date +%s.%N)
    read -r u _ < <(measure "$log" "$SIFT" update "$d/data" "$@")
    id=$(basename "$(readlink "$d/data/current")")
    kill -HUP $spid
    until curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q "version=\"$id\""; do
      kill -0 $spid 2>/dev/null || { cat "$d/serve.log" >&2; exit 1; }
      sleep 0.05
    done
    echo "$u $(echo "$(date +%s.%N) - $t0" | bc)"
  }
  u10=- s10=- u1m=- s1m=-
  if [ "${UPDATES:-1}" != 0 ]; then
    gen 10000 "$n" >"$d/add10k.txt"
    read -r u10 s10 < <(update "$d/update10k.log" --add "$d/add10k.txt")
  fi
  if [ "${UPDATES:-1}" != 0 ] && [ "$n" -ge 1000000 ]; then
    gen 1000000 $((n + 10000)) >"$d/add1m.txt"
    read -r u1m s1m < <(update "$d/update1m.log" --add "$d/add1m.txt")
  fi
  kill $spid; wait $spid 2>/dev/null || true
  printf '%-11s %-9s %-10s %-9s %-14s %-10s %-9s %-20s %-20s\n' "$n" "$bs" "$bm" "$disk" \
    "$ready" "$rss" "${q:--}" "$u10/$s10" "$u1m/$s1m"
  [ "${CLEAN:-0}" = 0 ] || rm -rf "$d"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Apple pir-service-example issue 30 (100M rows): build 1-2 h, processing 1-2 h, load > 1 h, every update >= 5 h."
echo "Goals here (2 cores): 100M built < 15 min in < 4 GB; serving < 10 s after start; 10k changes < 10 s;"
echo "query time at 10M and 100M within 1.3x of the 100k figure (query_ms column, one run)."
