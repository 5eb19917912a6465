#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in one go, each beside its reference,
# on this machine, and prints the tables in Markdown. About fifteen minutes (s6-supervise and
# supervisord restart at most about once a second). KV_BENCH_SECTION=resp runs only
# redis-benchmark against redis-server; =direct only the direct reads (with pagebench beside
# them), LOOKUP, CREATE and kill-to-gone; =text only the text server's section (the figures
# of BENCHMARKS.md's "Text server"); =cluster only cluster mode's (BENCHMARKS.md's "Cluster":
# registryd --cluster on a real etcd, which it installs if missing, beside a plain registryd;
# about two minutes).
# Everything it prints is measured in the run; nothing is written by hand.
#   bench/run.sh            build (installing what is missing) and run
#   KV_BENCH_QUICK=1 ...    smaller counts, for a quick look
set -euo pipefail
export LC_ALL=C # bash's time and every number here with a decimal point, whatever the locale

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/kv" build >/dev/null
if ! command -v redis-server >/dev/null; then
  echo "bench: installing redis-server (the reference)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# The restart references: s6-supervise and supervisord, both from Debian.
if ! command -v s6-supervise >/dev/null || ! command -v supervisord >/dev/null; then
  echo "bench: installing s6 and supervisor (the restart references)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s6 supervisor >/dev/null
fi
bin="${KV_BUILD_DIR:-$here/build}/bin" # ./kv builds there too
work="$(mktemp -d /tmp/kvbench.XXXXXX)"
quick="${KV_BENCH_QUICK:-}"
# registryd holds two descriptors per live bucket (its pidfd and its segment)
# and raises its soft RLIMIT_NOFILE to the hard one, which an unprivileged
# (or container) process cannot raise: as many live buckets as that allows,
# up to 10,000, with 500 descriptors to spare.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -Hn)
live_max=10000
if [[ "$fd_limit" != unlimited ]] && (( (fd_limit - 500) / 2 < live_max )); then
  live_max=$(( (fd_limit - 500) / 2 / 100 * 100 ))
fi
scale_count=$([[ -n "$quick" ]] && echo 1000 || echo "$live_max")
kill_count=$([[ -n "$quick" ]] && echo 200 || echo 1000)
restart_count=$([[ -n "$quick" ]] && echo 50 || echo 200)
reference_count=$([[ -n "$quick" ]] && echo 10 || echo 100)

cluster_pids=() # every registryd of the cluster section (and its plain reference)
cleanup() {
  [[ -n "${registry_pid:-}" ]] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  [[ -n "${storm_pid:-}" ]] && kill "$storm_pid" 2>/dev/null && wait "$storm_pid" 2>/dev/null
  [[ -n "${text_pid:-}" ]] && kill "$text_pid" 2>/dev/null && wait "$text_pid" 2>/dev/null
  for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  [[ -n "${etcd_pid:-}" ]] && kill "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  [[ -n "${s6_pid:-}" ]] && s6-svc -xd "$work/s6/bucket" 2>/dev/null && wait "$s6_pid" 2>/dev/null
  [[ -n "${supervisord_pid:-}" ]] && kill "$supervisord_pid" 2>/dev/null && wait "$supervisord_pid" 2>/dev/null
  rm -f /dev/shm/kvbench-s6-"$$" /dev/shm/kvbench-supervisord-"$$"
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
machine_line() {
  echo "Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(date -u +%Y-%m-%d)."
}

# The text server: textd (registryd --text-listen), the guide's protocol on
# TCP, one process per client, beside the same bucket's RESP socket, on a
# registryd of its own. The clients are kvbench's threads, on the same two
# cores as the servers.
text_section() {
  text_seconds=$([[ -n "$quick" ]] && echo 1 || echo 3)
  text_connects=$([[ -n "$quick" ]] && echo 500 || echo 2000)
  text_idle=$([[ -n "$quick" ]] && echo 50 || echo 200)
  text_clients=50
  "$bin/registryd" --run-dir "$work/text" --text-listen 127.0.0.1:0 2>"$work/text.log" &
  text_pid=$!
  wait_for_socket "$work/text/registry.sock"
  $bin/kvbench --run-dir "$work/text" text --keys 1000 --clients "$text_clients" --seconds "$text_seconds" \
    --connects "$text_connects" --idle "$text_idle" > "$work/text.json"
  kill "$text_pid" && wait "$text_pid" || true
  text_pid=
  tj="$work/text.json"
  text_rate_row() { # label text-prefix resp-prefix
    echo "| $1 | $(fmt "$(json "$tj" "$2_ops_per_s")")/s, $(json "$tj" "$2_p50_us") / $(json "$tj" "$2_p99_us") us |" \
      "$(fmt "$(json "$tj" "$3_ops_per_s")")/s, $(json "$tj" "$3_p50_us") / $(json "$tj" "$3_p99_us") us |" \
      "$(ratio "$(json "$tj" "$2_ops_per_s")" "$(json "$tj" "$3_ops_per_s")") | $(ratio "$(json "$tj" "$2_p50_us")" "$(json "$tj" "$3_p50_us")") |"
  }
  echo
  echo "## Text server (textd, TCP loopback) beside the bucket's RESP socket (Unix), same bucket, same run"
  echo
  echo "| measure | text: ops/s, p50 / p99 | RESP: ops/s, p50 / p99 | ops/s text / RESP | p50 text / RESP |"
  echo "|---|---|---|---|---|"
  text_rate_row "GET, $text_clients blocking clients, 1 request outstanding each" text_get resp_get
  text_rate_row "PUT (RESP: SET), $text_clients blocking clients" text_put resp_set
  echo "| connect + GET + close, one at a time, $text_connects times | $(json "$tj" text_connect_p50_us) / $(json "$tj" text_connect_p99_us) us |" \
    "$(json "$tj" resp_connect_p50_us) / $(json "$tj" resp_connect_p99_us) us | | $(ratio "$(json "$tj" text_connect_p50_us)" "$(json "$tj" resp_connect_p50_us)") |"
  echo
  echo "Memory per idle connection ($text_idle held, each after one GET): a textd handler process, Pss $(json "$tj" text_handler_pss_kib) KiB" \
    "(private $(json "$tj" text_handler_private_kib) KiB; textd and its handlers together grew $(json "$tj" text_total_pss_growth_kib) KiB per connection," \
    "from textd's $(json "$tj" textd_pss_alone_kib) KiB alone); a RESP connection grew the bucket's RSS by $(json "$tj" resp_bucket_rss_growth_kib) KiB." \
    "Socket buffers (kernel memory) are in neither."
}

# Cluster mode: registryd --cluster on Debian's etcd (one member, loopback,
# its data dir under $work on /tmp), each figure beside its reference from
# this run: a plain registryd (no --cluster, same options otherwise) and etcd's
# bare transaction. Ports are chosen free (held until all are chosen); etcd
# runs under setpriv --pdeathsig KILL, so it dies with this script even if
# the trap does not run.
free_ports() { # count: that many ports on 127.0.0.1, free a moment ago
  python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}
start_etcd() { # until it answers /health; a port taken meanwhile: start afresh, 5 times at most
  local client peer
  for _ in 1 2 3 4 5; do
    read -r client peer < <(free_ports 2)
    rm -rf "$work/etcd"
    setpriv --pdeathsig KILL -- etcd --name kvbench --data-dir "$work/etcd" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "kvbench=http://127.0.0.1:$peer" --initial-cluster-state new \
      --logger zap --log-outputs stderr --log-level error 2>>"$work/etcd.log" &
    etcd_pid=$!
    etcd_url="http://127.0.0.1:$client"
    for _ in $(seq 200); do
      kill -0 "$etcd_pid" 2>/dev/null || break # it exited: a port was taken
      curl -sf "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' && return 0
      sleep 0.05
    done
    kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null || true
    etcd_pid=
  done
  echo "bench: etcd did not start; its log: $work/etcd.log" >&2
  tail -5 "$work/etcd.log" >&2
  exit 1
}
start_node() { # node run-dir ttl [registryd options]: a registryd joined to the cluster as `node`; its pid in node_pid
  local node=$1 dir=$2 ttl=$3
  shift 3
  "$bin/registryd" --run-dir "$dir" --cluster "$etcd_url" --node "$node" --lease-ttl "$ttl" "$@" 2>>"$work/node-$node.log" &
  node_pid=$!
  cluster_pids+=("$node_pid")
  wait_for_socket "$dir/registry.sock"
}
cluster_section() {
  command -v etcd >/dev/null || {
    echo "bench: installing etcd-server (cluster mode's etcd)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  }
  create_count=$([[ -n "$quick" ]] && echo 100 || echo 500)
  cluster_kill_count=$([[ -n "$quick" ]] && echo 50 || echo 200)
  node_kills=$([[ -n "$quick" ]] && echo 2 || echo 5)
  lookup_seconds=$([[ -n "$quick" ]] && echo 1 || echo 3)
  start_etcd
  etcd_version=$(etcd --version | sed -n 's/^etcd Version: //p')
  "$bin/registryd" --run-dir "$work/plain" 2>"$work/plain.log" &
  cluster_pids+=("$!")
  wait_for_socket "$work/plain/registry.sock"
  # Node a also serves TCP (--listen-tcp), for the remote GET/SET rows.
  (umask 077 && echo "kvbench-$$-password" > "$work/password")
  start_node a "$work/a" 10 --listen-tcp 127.0.0.1:0 --password-file "$work/password"
  start_node b "$work/b" 10
  b_pid=$node_pid
  kc="$bin/kvbench"
  $kc --run-dir "$work/a" cluster-create --local-run-dir "$work/plain" --etcd "$etcd_url" --count "$create_count" > "$work/ccreate.json"
  $kc --run-dir "$work/b" cluster-lookup --owner-run-dir "$work/a" --local-run-dir "$work/plain" --buckets 100 --seconds "$lookup_seconds" > "$work/clookup.json"
  $kc --run-dir "$work/a" cluster-kill --owner-run-dir "$work/b" --local-run-dir "$work/plain" --count "$cluster_kill_count" > "$work/ckill.json"
  # Remote GET and SET over TCP: a bucket of node a at the address LOOKUP
  # on node b gives, beside redis-server with --requirepass over TCP, both
  # with the password, the same redis-benchmark flags, in turn.
  redis-cli -s "$work/a/registry.sock" CREATE bench-tcp >/dev/null
  tcp_address=
  for _ in $(seq 200); do # until b's copy has it (its watch)
    tcp_address=$(redis-cli -s "$work/b/registry.sock" LOOKUP bench-tcp | sed -n '/^address$/{n;p;}')
    [[ -n "$tcp_address" ]] && break
    sleep 0.01
  done
  read -r redis_tcp_port < <(free_ports 1)
  redis-server --port "$redis_tcp_port" --bind 127.0.0.1 --requirepass "$(cat "$work/password")" --save '' --appendonly no >/dev/null 2>&1 &
  cluster_pids+=("$!")
  for _ in $(seq 200); do
    [[ "$(redis-cli --no-auth-warning -a "$(cat "$work/password")" -p "$redis_tcp_port" PING 2>/dev/null)" == PONG ]] && break
    sleep 0.05
  done
  tcp_requests=$([[ -n "$quick" ]] && echo 10000 || echo 100000)
  for clients in 1 8; do
    redis-benchmark -h "${tcp_address%:*}" -p "${tcp_address##*:}" -a "$(cat "$work/password")" -t set,get -n "$tcp_requests" -c "$clients" --csv > "$work/tcp-kv-$clients.csv" 2>/dev/null
    redis-benchmark -h 127.0.0.1 -p "$redis_tcp_port" -a "$(cat "$work/password")" -t set,get -n "$tcp_requests" -c "$clients" --csv > "$work/tcp-redis-$clients.csv" 2>/dev/null
  done
  # A node's death: node b (its own lease TTL) restarted with a fresh run dir
  # and node name for each repetition, its registryd SIGKILLed by kvbench.
  kill "$b_pid" && wait "$b_pid" || true
  for ttl in 2 5; do
    for i in $(seq "$node_kills"); do
      start_node "b$ttl-$i" "$work/b$ttl-$i" "$ttl"
      $kc --run-dir "$work/a" cluster-node-kill --owner-run-dir "$work/b$ttl-$i" >> "$work/nodekill$ttl.json"
      wait "$node_pid" 2>/dev/null || true
      # The killed node's segments: the next registryd on its run dir
      # removes what its predecessor left, before it serves anyone.
      "$bin/registryd" --run-dir "$work/b$ttl-$i" 2>>"$work/node-b$ttl-$i.log" &
      cluster_pids+=("$!")
      wait_for_socket "$work/b$ttl-$i/registry.sock"
      kill "$!" && wait "$!" || true
    done
  done
  for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  cluster_pids=()
  kill "$etcd_pid" && wait "$etcd_pid" || true
  etcd_pid=

  cc="$work/ccreate.json"; cl="$work/clookup.json"; ck="$work/ckill.json"
  lat() { echo "$(json "$1" "$2_p50_us") / $(json "$1" "$2_p99_us") us"; }
  p50_ratio() { ratio "$(json "$1" "$2_p50_us")" "$(json "$3" "$4_p50_us")"; }
  echo
  echo "## Cluster mode: registryd --cluster on etcd $etcd_version (one member, loopback), beside a plain registryd, same run"
  echo
  echo "| measure | cluster p50 / p99 | reference, same run: p50 / p99 | p50 ratio |"
  echo "|---|---|---|---|"
  echo "| CREATE, spawn to ready, $create_count (in turn with the two beside) | $(lat "$cc" cluster) | plain registryd: $(lat "$cc" local) | $(p50_ratio "$cc" cluster "$cc" local) |"
  echo "| ... the bare etcd txn (create-if-absent, lease, own connection) | | $(lat "$cc" txn) | cluster CREATE / txn: $(p50_ratio "$cc" cluster "$cc" txn) |"
  echo "| ... what kv adds: cluster CREATE p50 - plain CREATE p50 - txn p50 | $(python3 -c 'import sys; print(f"{float(sys.argv[1]) - float(sys.argv[2]) - float(sys.argv[3]):.1f}")' "$(json "$cc" cluster_p50_us)" "$(json "$cc" local_p50_us)" "$(json "$cc" txn_p50_us)") us | | |"
  echo "| LOOKUP of another node's name, $(fmt "$(json "$cl" count)") (in turn with the two beside) | $(lat "$cl" remote) | plain registryd, local name: $(lat "$cl" local) | $(p50_ratio "$cl" remote "$cl" local) |"
  echo "| ... LOOKUP of a node's own name on that node | $(lat "$cl" own) | plain registryd: $(lat "$cl" local) | $(p50_ratio "$cl" own "$cl" local) |"
  echo "| bucket SIGKILLed on node b until node a's LOOKUP says NOTFOUND, $cluster_kill_count | $(lat "$ck" freed) | plain registryd's kill-to-gone (as \`kvbench kill\`): $(lat "$ck" local) | $(p50_ratio "$ck" freed "$ck" local) |"
  echo "| ... of which until node b's own table dropped it | $(lat "$ck" owner_gone) | | |"
  echo "| ... of which the kernel, until the exit is visible at all | $(lat "$ck" exit_seen) | $(lat "$ck" local_exit_seen) | |"
  echo
  echo "| node b's registryd SIGKILLed until node a's LOOKUP says NOTFOUND | repetitions | freed after (each, s) | b's lease was surely valid for (each, s, INFO cluster_lease_valid_ms just before the kill) | freed minus valid (each, s) |"
  echo "|---|---|---|---|---|"
  for ttl in 2 5; do
    python3 -c '
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
freed = [r["freed_ms"] / 1000 for r in runs]
valid = [r["lease_valid_ms"] / 1000 for r in runs]
each = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"| --lease-ttl {sys.argv[2]} | {len(runs)} | {each(freed)} | {each(valid)} | {each(f - v for f, v in zip(freed, valid))} |")' "$work/nodekill$ttl.json" "$ttl"
  done
  echo
  echo "| remote over TCP (a node a bucket at LOOKUP's address from node b, AUTH) | clients | kv ops/s | redis-server --requirepass ops/s | kv / redis | kv p50 / p99 ms | redis p50 / p99 ms |"
  echo "|---|---|---|---|---|---|---|"
  for clients in 1 8; do
    for test in SET GET; do
      kv=$(csv_field "$work/tcp-kv-$clients.csv" "$test" rps)
      redis=$(csv_field "$work/tcp-redis-$clients.csv" "$test" rps)
      echo "| $test, $(fmt "$tcp_requests") requests | $clients | $(fmt "$kv") | $(fmt "$redis") | $(ratio "$kv" "$redis") |" \
        "$(csv_field "$work/tcp-kv-$clients.csv" "$test" p50_latency_ms) / $(csv_field "$work/tcp-kv-$clients.csv" "$test" p99_latency_ms) |" \
        "$(csv_field "$work/tcp-redis-$clients.csv" "$test" p50_latency_ms) / $(csv_field "$work/tcp-redis-$clients.csv" "$test" p99_latency_ms) |"
    done
  done
  echo
  echo "etcd's data dir: $work/etcd, on $(df --output=fstype "$work" | tail -1) ($(df --output=source "$work" | tail -1))."
}

cpu_ticks() { # pid: its CPU time so far (utime + stime), in clock ticks
  # The fields after the name, which is in parentheses and may hold spaces.
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
timed() { # file command...: runs the command, its output to file, and prints "wall user sys" in seconds
  local TIMEFORMAT='%R %U %S' out=$1
  shift
  { time "$@" > "$out" 2>/dev/null; } 2>&1
}
median_row() { # test csv...: "rps p50 p99" of the round with the median ops/s (the upper middle one of an even count)
  python3 -c '
import csv, sys
rows = [next(r for r in csv.DictReader(open(f)) if r["test"] == sys.argv[1]) for f in sys.argv[2:]]
rows.sort(key=lambda r: float(r["rps"]))
r = rows[len(rows) // 2]
print(r["rps"], r["p50_latency_ms"], r["p99_latency_ms"])' "$@"
}

# redis-benchmark against a bucket and redis-server, every configuration.
resp_section() {
  # Each configuration runs $rounds times, kv and redis-server in turn, and
  # each server's row is its median round (by ops/s) of that test: one burst of
  # other people's load on this shared machine then moves neither server's figure.
  rounds=${KV_BENCH_ROUNDS:-3}
  local bucket_pid cpu_rows=()
  bucket_pid="$(redis-cli -s "$work/run/registry.sock" --raw LOOKUP bench | sed -n 4p)"
  echo "## kv against redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'), same redis-benchmark flags, Unix sockets, median of $rounds rounds"
  echo
  echo "| test | clients | pipeline | kv ops/s | redis ops/s | kv / redis | target | kv p50 / p99 ms | redis p50 / p99 ms |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for clients in 1 8; do
    for pipeline in 1 64; do
      requests=$(( pipeline == 1 ? 100000 : 2000000 ))
      [[ -n "$quick" ]] && requests=$(( requests / 10 ))
      # Who was busy: each server's CPU time (/proc, utime + stime) and
      # redis-benchmark's (bash's time), over all rounds of this configuration.
      local kv_cpu=0 redis_cpu=0 client_kv="0 0 0" client_redis="0 0 0"
      for round in $(seq "$rounds"); do
        # Alternate the two servers, so drift in a shared machine hits both.
        kv_cpu=$(( kv_cpu - $(cpu_ticks "$bucket_pid") ))
        client_kv="$client_kv $(timed "$work/kv-$round.csv" redis-benchmark -s "$bucket" -t set,get,incr,mset -n "$requests" -c "$clients" -P "$pipeline" --csv)"
        kv_cpu=$(( kv_cpu + $(cpu_ticks "$bucket_pid") ))
        redis_cpu=$(( redis_cpu - $(cpu_ticks "$redis_pid") ))
        client_redis="$client_redis $(timed "$work/redis-$round.csv" redis-benchmark -s "$work/redis.sock" -t set,get,incr,mset -n "$requests" -c "$clients" -P "$pipeline" --csv)"
        redis_cpu=$(( redis_cpu + $(cpu_ticks "$redis_pid") ))
      done
      target=$([[ $pipeline == 1 ]] && echo ">= 1.0" || echo ">= 1.2")
      for test in SET GET INCR "MSET (10 keys)"; do
        read -r kv kv50 kv99 < <(median_row "$test" "$work"/kv-*.csv)
        read -r redis redis50 redis99 < <(median_row "$test" "$work"/redis-*.csv)
        echo "| $test | $clients | $pipeline | $(fmt "$kv") | $(fmt "$redis") | $(ratio "$kv" "$redis") | $target | $kv50 / $kv99 | $redis50 / $redis99 |"
      done
      cpu_rows+=("$(python3 -c '
import sys
clients, pipeline, requests, kv, redis = sys.argv[1:6]
tick = 1e6 / float(sys.argv[6])
total = 4 * int(requests) * int(sys.argv[7])  # four tests a round
def busy(triples):  # "wall user sys" repeated: the client busy share, CPU us per request
    v = [float(x) for x in triples.split()]
    wall, cpu = sum(v[0::3]), sum(v[1::3]) + sum(v[2::3])
    return cpu / wall, cpu * 1e6 / total
ck, cr = busy(sys.argv[8]), busy(sys.argv[9])
server_ratio = int(kv) / int(redis) if int(redis) else float("nan")
print(f"| {clients} | {pipeline} | {ck[0]:.0%} / {cr[0]:.0%} | {ck[1]:.2f} / {cr[1]:.2f} | {int(kv) * tick / total:.2f} / {int(redis) * tick / total:.2f} | {server_ratio:.2f} |")' \
        "$clients" "$pipeline" "$requests" "$kv_cpu" "$redis_cpu" "$(getconf CLK_TCK)" "$rounds" "$client_kv" "$client_redis")")
      rm -f "$work"/kv-*.csv "$work"/redis-*.csv
    done
  done
  echo
  echo "Who was busy in those runs (all rounds of each configuration; redis-benchmark is one thread on one of the two cores):"
  echo
  echo "| clients | pipeline | redis-benchmark busy, kv run / redis run | its CPU us per request, kv / redis | server CPU us per request, kv / redis | server CPU kv / redis |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${cpu_rows[@]}"
  placement_rows "$bucket_pid"
}

# The 1-client pipelined rows once more, with redis-benchmark and the server
# on one core (taskset; each server's affinity is put back after). On two
# cores, each batch of replies has to wake the other core's sleeping client,
# and each batch of requests the server's, and on a virtual machine whose idle
# cores halt those wake-ups are a big and changing share of every round trip.
# On one core nobody waits for another core to wake: what is left is the two
# programs' own work. The rows above stay the targets; these say how much of
# their ratio the wake-ups between cores set. Neither server's settings change.
placement_rows() { # bucket_pid
  local bucket_pid=$1 bucket_mask redis_mask test round
  bucket_mask=$(taskset -p "$bucket_pid" | awk '{print $NF}')
  redis_mask=$(taskset -p "$redis_pid" | awk '{print $NF}')
  taskset -a -p 1 "$bucket_pid" > /dev/null
  taskset -a -p 1 "$redis_pid" > /dev/null
  requests=$([[ -n "$quick" ]] && echo 200000 || echo 2000000)
  for round in $(seq "$rounds"); do
    taskset 1 redis-benchmark -s "$bucket" -t get,incr -n "$requests" -c 1 -P 64 --csv > "$work/kv-$round.csv" 2>/dev/null
    taskset 1 redis-benchmark -s "$work/redis.sock" -t get,incr -n "$requests" -c 1 -P 64 --csv > "$work/redis-$round.csv" 2>/dev/null
  done
  taskset -a -p "$bucket_mask" "$bucket_pid" > /dev/null
  taskset -a -p "$redis_mask" "$redis_pid" > /dev/null
  echo
  echo "The 1-client pipelined rows with redis-benchmark and the server on one core (taskset, both servers alike; median of $rounds rounds, in turn):"
  echo
  echo "| test | clients | pipeline | kv ops/s | redis ops/s | kv / redis, one core | kv / redis, every round |"
  echo "|---|---|---|---|---|---|---|"
  for test in GET INCR; do
    read -r kv _ < <(median_row "$test" "$work"/kv-*.csv)
    read -r redis _ < <(median_row "$test" "$work"/redis-*.csv)
    local each=""
    for round in $(seq "$rounds"); do
      each="$each $(ratio "$(csv_field "$work/kv-$round.csv" "$test" rps)" "$(csv_field "$work/redis-$round.csv" "$test" rps)")"
    done
    echo "| $test | 1 | 64 | $(fmt "$kv") | $(fmt "$redis") | $(ratio "$kv" "$redis") |$each |"
  done
  rm -f "$work"/kv-*.csv "$work"/redis-*.csv
}

# The direct reads, the name table, CREATE beside a bare spawn, kill-to-gone
# beside the bare pidfd floor (and that floor with a monitor).
direct_section() {
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
  $kb direct-get --keys 1000000 --threads 1 --seconds 3 --batch 16 > "$work/d3b.json"
  d1=$(json "$work/d1.json" ops_per_s); d2=$(json "$work/d2.json" ops_per_s); d3=$(json "$work/d3.json" ops_per_s)
  d1c=$(json "$work/d1c.json" ops_per_s); d3c=$(json "$work/d3c.json" ops_per_s); d3b=$(json "$work/d3b.json" ops_per_s)
  # No ratio against a socket GET here: an in-process read and a round trip
  # through a socket are not the same operation.
  echo "| direct GET, 1 thread, 1,000 keys | $(fmt "$d1")/s | | | >= 10 M/s |"
  echo "| ... with a writer SETting other keys of the bucket | $(fmt "$d1c")/s | uncontended, above: $(fmt "$d1")/s ($(fmt "$(json "$work/d1c.json" writes_per_s)") writes/s) | $(ratio "$d1c" "$d1") | |"
  echo "| direct GET, 2 threads, 1,000 keys | $(fmt "$d2")/s | 1 thread, above: $(fmt "$d1")/s | $(ratio "$d2" "$d1") | |"
  echo "| direct GET, 1 thread, 1,000,000 keys | $(fmt "$d3")/s | | | >= 5 M/s |"
  echo "| ... with a writer SETting other keys of the bucket | $(fmt "$d3c")/s | uncontended, above: $(fmt "$d3")/s ($(fmt "$(json "$work/d3c.json" writes_per_s)") writes/s) | $(ratio "$d3c" "$d3") | |"
  echo "| direct MGET of 16 keys (get_many), 1 thread, 1,000,000 keys | $(fmt "$d3b") keys/s | one GET at a time, above: $(fmt "$d3")/s | $(ratio "$d3b" "$d3") | >= 10 M keys/s |"
  # What one read of a random line of a region the index's size costs here
  # when it cannot overlap with the next (pagebench), in the 4 KiB pages a
  # /dev/shm segment gets on this machine and in huge pages: the memory's
  # share of a direct GET over 1,000,000 keys, and the TLB's.
  "$bin/pagebench" --mib 128 --rounds 1 > "$work/page.json"
  grep '"4K"' "$work/page.json" > "$work/page4k.json"
  grep '"2M"' "$work/page.json" > "$work/page2m.json"
  p4=$(json "$work/page4k.json" ns_per_dependent_read); p2=$(json "$work/page2m.json" ns_per_dependent_read)
  echo "| one dependent read of a random 64-byte line of 128 MiB, 4 KiB pages (pagebench) | $p4 ns | in huge pages ($(json "$work/page2m.json" anon_huge_mib) MiB of them): $p2 ns | $(ratio "$p4" "$p2") | |"
  $kb lookup --buckets 100 --seconds 3 > "$work/lookup.json"
  table=$(json "$work/lookup.json" table_ops_per_s); socket=$(json "$work/lookup.json" socket_ops_per_s)
  echo "| LOOKUP through the name table | $(fmt "$table")/s | | | >= 10 M/s |"
  echo "| LOOKUP on the registry socket, one client (p50 / p99) | $(fmt "$socket")/s | $(json "$work/lookup.json" socket_median_us) / $(json "$work/lookup.json" socket_p99_us) us per call | | |"
  $kb create --count "$kill_count" > "$work/create.json"
  "$bin/kvbench" spawn-floor --program "$bin/kvbench-ready" --count "$kill_count" > "$work/spawn.json"
  c50=$(json "$work/create.json" median_us); s50=$(json "$work/spawn.json" median_us)
  echo "| CREATE, spawn to ready (p50 / p99) | $c50 / $(json "$work/create.json" p99_us) us | bare posix_spawn of a static program to its readiness line (kvbench-ready): $s50 / $(json "$work/spawn.json" p99_us) us | $(ratio "$c50" "$s50") | p50 <= 3x bare spawn |"
  $kb kill --count "$kill_count" > "$work/kill.json"
  k50=$(json "$work/kill.json" median_us); f50=$(json "$work/kill.json" floor_median_us)
  echo "| kill-to-gone over $kill_count kills (p50 / p99) | $k50 / $(json "$work/kill.json" p99_us) us | bare pidfd floor: $f50 / $(json "$work/kill.json" floor_p99_us) us | $(ratio "$k50" "$f50") | p50 <= 1.5x floor, p99 < 1 ms |"
  # Before registryd can do anything: a bound under kill-to-gone.
  e50=$(json "$work/kill.json" exit_seen_median_us)
  echo "| ... of which the kernel, until the bucket's exit is visible at all (p50) | $e50 us | bare pidfd floor: $f50 us | $(ratio "$e50" "$f50") | |"
  # The bare floor's child is killed before it has run, and nothing sleeps on
  # its exit; a bucket has said it is ready, and its exit wakes registryd,
  # asleep in epoll_wait on its pidfd. A bare child killed after it said it
  # was ready, reaped by a thread asleep on its pidfd that then says so: what
  # any supervisor that sleeps until an exit pays, beside what kv pays.
  m50=$(json "$work/kill.json" monitored_floor_median_us)
  echo "| kill-to-gone against the floor with a monitor (p50 / p99) | $k50 / $(json "$work/kill.json" p99_us) us | bare child killed once ready, reaped by a thread asleep in epoll_wait on its pidfd: $m50 / $(json "$work/kill.json" monitored_floor_p99_us) us | $(ratio "$k50" "$m50") | |"
}

case "${KV_BENCH_SECTION:-}" in
  "") ;;
  resp) resp_section; echo; machine_line; exit 0 ;;
  direct) direct_section; echo; machine_line; exit 0 ;;
  text) text_section; echo; machine_line; exit 0 ;;
  cluster) cluster_section; echo; machine_line; exit 0 ;;
  *) echo "bench: unknown KV_BENCH_SECTION ${KV_BENCH_SECTION} (known: resp, direct, text, cluster)" >&2; exit 2 ;;
esac

resp_section
direct_section
echo
echo "## $scale_count live buckets"
echo
echo "Descriptor limit (hard RLIMIT_NOFILE) $fd_limit: room for $live_max live buckets in registryd."
echo
echo "| clients creating | time to create all | registryd RSS | bucket PSS p50 / max | kill all to empty LIST |"
echo "|---|---|---|---|---|"
for clients in 4 1; do
  $kb scale --count "$scale_count" --clients "$clients" > "$work/scale.json"
  echo "| $clients | $(json "$work/scale.json" create_s) s | $(( $(json "$work/scale.json" registry_rss_kib) / 1024 )) MiB | $(json "$work/scale.json" bucket_pss_median_kib) / $(json "$work/scale.json" bucket_pss_max_kib) KiB | $(json "$work/scale.json" kill_all_to_empty_s) s |"
done

# Restarts, on a registryd of their own (fresh: no descriptor table grown by
# the runs above), which restarts as often as it is asked to.
kill "$registry_pid" && wait "$registry_pid" || true
registry_pid=
"$bin/registryd" --run-dir "$work/storm" --max-buckets 12000 --bucket-size 67108864 \
  --max-restarts 1000000 --max-seconds 1 2>"$work/storm.log" &
storm_pid=$!
wait_for_socket "$work/storm/registry.sock"
ks="$bin/kvbench --run-dir $work/storm"
$ks create --count "$restart_count" --stop-each > "$work/create0.json"
$ks restart --count "$restart_count" > "$work/restart0.json"

# The references restart the same bucketd, started by bench/bench_bucket.cpp
# (the socket, segment and environment registryd would give it), measured by
# the same code: SIGKILL, then until a PING on its socket is answered by a
# new process.
bucket_env=(KV_BENCH_BUCKETD="$bin/bucketd" KV_BENCH_BUCKET_SIZE=67108864)
mkdir -p "$work/s6/bucket" "$work/s6-socket"
ln -s "$bin/kvbench-bucket" "$work/s6/bucket/run"
echo 3 > "$work/s6/bucket/notification-fd" # bucketd writes "\n" there when it serves: s6's readiness
env "${bucket_env[@]}" KV_BENCH_DIR="$work/s6-socket" KV_BENCH_NAME="s6-$$" KV_BENCH_NOTIFY_FD=3 \
  s6-supervise "$work/s6/bucket" 2>"$work/s6.log" &
s6_pid=$!
# s6-supervise starts ./run no sooner than a second after it last started it:
# each kill comes 1.05 s after the previous restart (not timed).
$bin/kvbench reference-restart --socket "$work/s6-socket/bucket.sock" --count "$reference_count" --min-uptime-ms 1050 > "$work/s6.json"
s6-svc -xd "$work/s6/bucket" && wait "$s6_pid" || true
s6_pid=

mkdir -p "$work/supervisord-socket"
{
  echo "[supervisord]"
  echo "nodaemon=true"
  echo "logfile=$work/supervisord.log"
  echo "pidfile=$work/supervisord.pid"
  echo "childlogdir=$work"
  echo "loglevel=warn"
  [[ $EUID -eq 0 ]] && echo "user=root"
  echo
  echo "[program:bucket]"
  echo "command=$bin/kvbench-bucket"
  echo "autorestart=true"
  echo "startsecs=0"
  echo "environment=KV_BENCH_BUCKETD=\"$bin/bucketd\",KV_BENCH_BUCKET_SIZE=\"67108864\",KV_BENCH_DIR=\"$work/supervisord-socket\",KV_BENCH_NAME=\"supervisord-$$\""
  echo "stdout_logfile=$work/supervisord-bucket.log"
  echo "redirect_stderr=true"
} > "$work/supervisord.conf"
supervisord -c "$work/supervisord.conf" >"$work/supervisord.out" 2>&1 &
supervisord_pid=$!
$bin/kvbench reference-restart --socket "$work/supervisord-socket/bucket.sock" --count "$reference_count" > "$work/supervisord.json"
kill "$supervisord_pid" && wait "$supervisord_pid" || true
supervisord_pid=

r50=$(json "$work/restart0.json" median_us)
restart_row() { # label count json
  echo "| $1 | $2 | $(json "$3" median_us) / $(json "$3" p99_us) us | $(json "$3" exit_seen_median_us) us | $(ratio "$(json "$3" median_us)" "$r50") |"
}
echo
echo "## Restart: SIGKILL to restarted-and-ready, kv beside s6-supervise and supervisord"
echo
echo "| supervisor, restarting bucketd | restarts | kill to restarted-and-ready p50 / p99 | until the exit is visible (p50) | p50 / kv's |"
echo "|---|---|---|---|---|"
restart_row "kv registryd, a permanent bucket" "$restart_count" "$work/restart0.json"
restart_row "s6-supervise (s6 $(dpkg-query -W -f='${Version}' s6))" "$reference_count" "$work/s6.json"
restart_row "supervisord $(supervisord --version)" "$reference_count" "$work/supervisord.json"
echo
echo "Beside it, the same registryd: CREATE, spawn to ready (p50 / p99), $restart_count creates: $(json "$work/create0.json" median_us) / $(json "$work/create0.json" p99_us) us."

# The storm figures: the same two measures with live buckets.
$ks fill --count "$live_max" --clients 4 > "$work/fill.json"
$ks create --count "$restart_count" --stop-each > "$work/createN.json"
$ks restart --count "$restart_count" > "$work/restartN.json"
kill "$storm_pid" && wait "$storm_pid" || true
storm_pid=
storm_row() { # label none.json many.json
  echo "| $1 | $(json "$2" median_us) / $(json "$2" p99_us) us | $(json "$3" median_us) / $(json "$3" p99_us) us | $(ratio "$(json "$3" median_us)" "$(json "$2" median_us)") | <= 1.5 |"
}
echo
echo "## Restart storms: none against $live_max live buckets, one registryd"
echo
echo "| measure ($restart_count each) | 0 live buckets p50 / p99 | $live_max live p50 / p99 | p50 ratio | target |"
echo "|---|---|---|---|---|"
storm_row "CREATE, spawn to ready (each STOPped before the next)" "$work/create0.json" "$work/createN.json"
storm_row "restart, kill to restarted-and-ready" "$work/restart0.json" "$work/restartN.json"
echo
echo "Descriptor limit (hard RLIMIT_NOFILE) $fd_limit; the $live_max live buckets were created in $(json "$work/fill.json" create_s) s from 4 clients."

text_section
cluster_section
echo
machine_line
