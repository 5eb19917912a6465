#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in one go, each beside its reference,
# on this machine, and prints the tables in Markdown. About five minutes.
# Everything it prints is measured in the run; nothing is written by hand.
#   bench/run.sh            build (installing what is missing) and run
#   KV_BENCH_QUICK=1 ...    smaller counts, for a quick look
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/kv" build >/dev/null
if ! command -v redis-server >/dev/null; then
  echo "bench: installing redis-server (the reference)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
bin="$here/build/bin"
work="$(mktemp -d /tmp/kvbench.XXXXXX)"
quick="${KV_BENCH_QUICK:-}"
scale_count=$([[ -n "$quick" ]] && echo 1000 || echo 10000)
kill_count=$([[ -n "$quick" ]] && echo 200 || echo 1000)

cleanup() {
  [[ -n "${registry_pid:-}" ]] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

wait_for_socket() { # path: until it answers PING (a start-up wait, bounded)
  for _ in $(seq 200); do
    [[ "$(redis-cli -s "$1" PING 2>/dev/null)" == PONG ]] && return 0
    sleep 0.05
  done
  echo "bench: nothing answers on $1" >&2
  exit 1
}

# The reference: redis-server on a Unix socket, persistence off, as a bucket.
redis-server --port 0 --unixsocket "$work/redis.sock" --unixsocketperm 700 --save '' --appendonly no \
  --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
# registryd, with room for 10,000 buckets and for a bucket of 1,000,000 keys.
"$bin/registryd" --run-dir "$work/run" --max-buckets 12000 --bucket-size 536870912 2>"$work/registryd.log" &
registry_pid=$!
wait_for_socket "$work/redis.sock"
wait_for_socket "$work/run/registry.sock"
"$bin/kvctl" --run-dir "$work/run" create bench >/dev/null
bucket="$(redis-cli -s "$work/run/registry.sock" --raw LOOKUP bench | sed -n 8p)"

json() { # file key: a number from kvbench's one-line JSON
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
csv_field() { # csv test column
  python3 -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(next(r for r in rows if r["test"] == sys.argv[2])[sys.argv[3]])' "$1" "$2" "$3"
}
ratio() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f"{a / b:.2f}")' "$1" "$2"; }
fmt() { python3 -c 'import sys; v = float(sys.argv[1]); print(f"{v:,.0f}")' "$1"; }

echo "## kv against redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), same redis-benchmark flags, Unix sockets"
echo
echo "| test | clients | pipeline | kv ops/s | redis ops/s | kv / redis | kv p50 / p99 ms | redis p50 / p99 ms |"
echo "|---|---|---|---|---|---|---|---|"
for clients in 1 8; do
  for pipeline in 1 64; do
    requests=$(( pipeline == 1 ? 100000 : 2000000 ))
    [[ -n "$quick" ]] && requests=$(( requests / 10 ))
    # Alternate the two servers, so drift in a shared machine hits both.
    redis-benchmark -s "$bucket" -t set,get,incr,mset -n "$requests" -c "$clients" -P "$pipeline" --csv > "$work/kv.csv" 2>/dev/null
    redis-benchmark -s "$work/redis.sock" -t set,get,incr,mset -n "$requests" -c "$clients" -P "$pipeline" --csv > "$work/redis.csv" 2>/dev/null
    for test in SET GET INCR "MSET (10 keys)"; do
      kv=$(csv_field "$work/kv.csv" "$test" rps)
      redis=$(csv_field "$work/redis.csv" "$test" rps)
      echo "| $test | $clients | $pipeline | $(fmt "$kv") | $(fmt "$redis") | $(ratio "$kv" "$redis") |" \
        "$(csv_field "$work/kv.csv" "$test" p50_latency_ms) / $(csv_field "$work/kv.csv" "$test" p99_latency_ms) |" \
        "$(csv_field "$work/redis.csv" "$test" p50_latency_ms) / $(csv_field "$work/redis.csv" "$test" p99_latency_ms) |"
    done
  done
done

echo
echo "## Direct reads, name table, spawn and exit"
echo
echo "| measure | kv | reference, same run | ratio | target |"
echo "|---|---|---|---|---|"
kb="$bin/kvbench --run-dir $work/run"
# Every direct GET checks the value it reads against its key; the contended
# runs also have a writer SETting other keys of the bucket the whole time.
$kb direct-get --keys 1000 --threads 1 --seconds 3 > "$work/d1.json"
$kb direct-get --keys 1000 --threads 1 --seconds 3 --contended > "$work/d1c.json"
$kb direct-get --keys 1000 --threads 2 --seconds 3 > "$work/d2.json"
$kb direct-get --keys 1000000 --threads 1 --seconds 3 > "$work/d3.json"
$kb direct-get --keys 1000000 --threads 1 --seconds 3 --contended > "$work/d3c.json"
d1=$(json "$work/d1.json" ops_per_s); d2=$(json "$work/d2.json" ops_per_s); d3=$(json "$work/d3.json" ops_per_s)
d1c=$(json "$work/d1c.json" ops_per_s); d3c=$(json "$work/d3c.json" ops_per_s)
# No ratio against a socket GET here: an in-process read and a round trip
# through a socket are not the same operation.
echo "| direct GET, 1 thread, 1,000 keys | $(fmt "$d1")/s | | | >= 10 M/s |"
echo "| ... with a writer SETting other keys of the bucket | $(fmt "$d1c")/s | uncontended, above: $(fmt "$d1")/s ($(fmt "$(json "$work/d1c.json" writes_per_s)") writes/s) | $(ratio "$d1c" "$d1") | |"
echo "| direct GET, 2 threads, 1,000 keys | $(fmt "$d2")/s | 1 thread, above: $(fmt "$d1")/s | $(ratio "$d2" "$d1") | |"
echo "| direct GET, 1 thread, 1,000,000 keys | $(fmt "$d3")/s | | | >= 3 M/s |"
echo "| ... with a writer SETting other keys of the bucket | $(fmt "$d3c")/s | uncontended, above: $(fmt "$d3")/s ($(fmt "$(json "$work/d3c.json" writes_per_s)") writes/s) | $(ratio "$d3c" "$d3") | |"
$kb lookup --buckets 100 --seconds 3 > "$work/lookup.json"
table=$(json "$work/lookup.json" table_ops_per_s); socket=$(json "$work/lookup.json" socket_ops_per_s)
echo "| LOOKUP through the name table | $(fmt "$table")/s | | | >= 10 M/s |"
echo "| LOOKUP on the registry socket, one client (p50 / p99) | $(fmt "$socket")/s | $(json "$work/lookup.json" socket_median_us) / $(json "$work/lookup.json" socket_p99_us) us per call | | |"
$kb create --count "$kill_count" > "$work/create.json"
echo "| CREATE, spawn to ready (p50 / p99) | $(json "$work/create.json" median_us) / $(json "$work/create.json" p99_us) us | | | p50 < 1 ms |"
$kb kill --count "$kill_count" > "$work/kill.json"
k50=$(json "$work/kill.json" median_us); f50=$(json "$work/kill.json" floor_median_us)
echo "| kill-to-gone over $kill_count kills (p50 / p99) | $k50 / $(json "$work/kill.json" p99_us) us | bare pidfd floor: $f50 / $(json "$work/kill.json" floor_p99_us) us | $(ratio "$k50" "$f50") | p50 <= 3x floor, p99 < 1 ms |"
echo "| ... of which the kernel, until the bucket's exit is visible at all (p50) | $(json "$work/kill.json" exit_seen_median_us) us | | | |"

echo
echo "## $scale_count live buckets"
echo
echo "| clients creating | time to create all | registryd RSS | bucket PSS p50 / max | kill all to empty LIST |"
echo "|---|---|---|---|---|"
for clients in 4 1; do
  $kb scale --count "$scale_count" --clients "$clients" > "$work/scale.json"
  echo "| $clients | $(json "$work/scale.json" create_s) s | $(( $(json "$work/scale.json" registry_rss_kib) / 1024 )) MiB | $(json "$work/scale.json" bucket_pss_median_kib) / $(json "$work/scale.json" bucket_pss_max_kib) KiB | $(json "$work/scale.json" kill_all_to_empty_s) s |"
done
echo
echo "Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(date -u +%Y-%m-%d)."
