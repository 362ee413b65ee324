#!/bin/bash
# Benchmark: the gateway side by side with plain nginx, in one run on one
# machine, written to bench/RESULTS.md.
#
#   bench/run.sh [-d seconds] [-c connections] [-n entries] [-r rounds]
#                [-m rounds] [-p pods]
#
# One nginx with one worker serves three ports that differ only in what
# the issue compares: (1) plain proxy_pass with keepalive to the runtime,
# (2) the gateway with authentication and routing, cache warm, (3) the
# gateway with the cache off.  The "sandbox runtime" is a second nginx
# answering /v1/shell/exec with a fixed AIO-shaped JSON body, so that the
# runtime is never the bottleneck being measured.  wrk (one thread) drives
# each in turn, the configurations interleaved for -r rounds, and the median
# round of each is reported, so drift in the machine's speed hits all alike.
# All of it shares this machine's cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=10
CONN=32
N=100000
ROUNDS=3
MANY_ROUNDS=
PODS=1000
while getopts "d:c:n:r:m:p:" o; do
    case $o in
        d) DUR=$OPTARG ;;
        c) CONN=$OPTARG ;;
        n) N=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        m) MANY_ROUNDS=$OPTARG ;;
        p) PODS=$OPTARG ;;
        *) echo "usage: $0 [-d seconds] [-c connections] [-n entries] [-r rounds] [-m rounds] [-p pods]"; exit 2 ;;
    esac
done
# the many-entries comparison resolves the smallest difference: by default
# it has twice the rounds
MANY_ROUNDS=${MANY_ROUNDS:-$((ROUNDS * 2))}

# SBX_BENCH_MODULE: another build of the module, for a before/after
MODULE=${SBX_BENCH_MODULE:-$ROOT/build/ngx_http_sandbox_module.so}
[ -f "$MODULE" ] || make -C "$ROOT" module
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk"; exit 1; }

DIR=$(mktemp -d /tmp/sandbox-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${SBX_BENCH_LEAVE:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

free_port() {
    perl -MIO::Socket::IP -e \
        'print IO::Socket::IP->new(LocalAddr=>"127.0.0.1",LocalPort=>0,Listen=>1)->sockport'
}

REDIS=$(free_port); RT=$(free_port); RT2=$(free_port)
P_PLAIN=$(free_port); P_WARM=$(free_port); P_COLD=$(free_port)
P_STATUS=$(free_port)

redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$DIR/redis.log" &
pids+=($!)
REDIS_PID=$!
# Redis's CPU time so far, in clock ticks: its I/O as well as its commands
redis_ticks() { awk '{ print $14 + $15 }' "/proc/$REDIS_PID/stat"; }

# pod i of the many-pods run: its own loopback address
pod_addr() { echo "127.0.$((1 + $1 / 250)).$((1 + $1 % 250)):$RT"; }

mkdir -p "$DIR/rt" "$DIR/gw"
cat > "$DIR/rt/nginx.conf" <<EOF
worker_processes 1;
pid $DIR/rt/nginx.pid;
error_log $DIR/rt/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$RT;
$(for i in $(seq 0 $((PODS - 1))); do echo "        listen $(pod_addr "$i");"; done)
        location / {
            default_type application/json;
            return 200 '{"success":true,"message":"Operation successful","data":{"session_id":"s1","command":"true","status":"completed","output":"ok\\n","exit_code":0}}';
        }
    }
    server {
        listen 127.0.0.1:$RT2;
        location / { return 200 'second\n'; }
    }
}
EOF
/usr/sbin/nginx -p "$DIR/rt/" -c "$DIR/rt/nginx.conf" -g 'daemon off;' &
pids+=($!)

cat > "$DIR/gw/nginx.conf" <<EOF
load_module $MODULE;
worker_processes 1;
pid $DIR/gw/nginx.pid;
error_log $DIR/gw/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    sandbox_redis 127.0.0.1:$REDIS;
    sandbox_cache_zone bench:128m;

    upstream plain_pool { server 127.0.0.1:$RT; keepalive 64; }
    upstream sandbox_pods { sandbox_balancer ${SBX_BENCH_BALANCER:-keepalive=1024}; }

    server {
        listen 127.0.0.1:$P_PLAIN;
        location / {
            proxy_pass http://plain_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$P_WARM;
        # warm means warm: the many-entries runs outlast the default 5m,
        # whose refills are a Redis matter (100,000 entries: ~370/s)
        sandbox_cache_ttl 1h;
        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods\$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$P_COLD;
        location / {
            sandbox_route on;
            sandbox_cache off;
            proxy_pass http://sandbox_pods\$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$P_STATUS;
        location / { sandbox_status; }
    }
}
EOF

for _ in $(seq 50); do redis-cli -p "$REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done

# deterministic keys: the loader and the wrk script derive the same ones
key_of() { printf 'sk_live_%032d' "$1"; }
rcli() { redis-cli -p "$REDIS" "$@" >/dev/null; }

seed_user() {   # user index
    local k h
    k=$(key_of "$1"); h=$(printf %s "$k" | sha256sum | cut -d' ' -f1)
    rcli HSET "sbx:user:u$1" username "u$1" active 1
    rcli HSET "sbx:key:$h" user "u$1" id "k$1" expires_at 0 active 1
    rcli HSET "sbx:route:u$1:sb" addr "127.0.0.1:$RT" ready 1 suspended 0 rv 1
}
seed_user 0

/usr/sbin/nginx -p "$DIR/gw/" -c "$DIR/gw/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$P_PLAIN/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$P_PLAIN/" \
    || { echo "the gateway did not start:"; cat "$DIR/gw/error.log"; exit 1; }

KEY0=$(key_of 0)
URI=/v1/shell/exec

# wrk, one thread: prints "rps p50_ms p99_ms errors"
# the gateway worker's CPU time so far, in clock ticks (utime + stime)
worker_ticks() {
    awk '{ print $14 + $15 }' "/proc/$(pgrep -P "$(cat "$DIR/gw/nginx.pid")" | head -1)/stat"
}

# prints "rps p50_ms p99_ms errors worker_cpu_us_per_request", and Redis's
# CPU per request into $DIR/redis.cpu
bench() {   # url [extra wrk args...]
    local url=$1 t0 t1; shift
    wrk -t1 -c"$CONN" -d1s "$@" "$url" >/dev/null 2>&1 || true   # warm up
    t0=$(worker_ticks); r0=$(redis_ticks)
    wrk -t1 -c"$CONN" -d"${DUR}s" --latency "$@" "$url" > "$DIR/wrk.out" 2>&1
    t1=$(worker_ticks); r1=$(redis_ticks)
    DIR=$DIR TICKS=$((t1 - t0)) RTICKS=$((r1 - r0)) HZ=$(getconf CLK_TCK) perl -ne '
        sub ms { my ($v, $u) = @_; $u eq "us" ? $v / 1000 : $u eq "s" ? $v * 1000 : $v }
        $rps = $1 if /^Requests\/sec:\s+([\d.]+)/;
        $p50 = ms($1, $2) if /^\s+50%\s+([\d.]+)(us|ms|s)/;
        $p99 = ms($1, $2) if /^\s+99%\s+([\d.]+)(us|ms|s)/;
        $err += $1 if /Non-2xx or 3xx responses:\s+(\d+)/;
        $err += $1 + $2 + $3 + $4 if /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
        $n = $1 if /^\s+(\d+) requests in/;
        END { printf "%.0f %.3f %.3f %d %.1f\n", $rps, $p50, $p99, $err || 0,
                     $n ? 1e6 * $ENV{TICKS} / $ENV{HZ} / $n : 0;
              open my $f, ">", "$ENV{DIR}/redis.cpu" or die;
              printf $f "%.1f\n", $n ? 1e6 * $ENV{RTICKS} / $ENV{HZ} / $n : 0 }' "$DIR/wrk.out"
}

# the median (by requests/s) of the lines in a file
median() { sort -n "$1" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }

echo "measuring plain / warm / nocache ($ROUNDS rounds of $DUR s, $CONN connections) ..."
: > "$DIR/plain"; : > "$DIR/warm"; : > "$DIR/cold"; : > "$DIR/cold.redis"
redis-cli -p "$REDIS" CONFIG RESETSTAT >/dev/null
for _ in $(seq "$ROUNDS"); do
    bench "http://127.0.0.1:$P_PLAIN$URI" >> "$DIR/plain"
    bench "http://127.0.0.1:$P_WARM/proxy/sb$URI" -H "Authorization: Bearer $KEY0" >> "$DIR/warm"
    bench "http://127.0.0.1:$P_COLD/proxy/sb$URI" -H "Authorization: Bearer $KEY0" >> "$DIR/cold"
    cat "$DIR/redis.cpu" >> "$DIR/cold.redis"
done
# Redis's own time per cache-off lookup over those rounds: its HMGETs
# and its EXISTS, one EXISTS per lookup (the warm runs read nothing, and
# report key uses by a script, in batches); or, with a module whose
# lookup is a script (SBX_BENCH_MODULE), its EVALSHAs (whose time
# includes the HMGETs they run)
read -r LOOKUPS LOOKUP_US < <(redis-cli -p "$REDIS" INFO commandstats \
    | perl -ne '$c{$1} = [$2, $3] if /^cmdstat_(hmget|exists|evalsha):calls=(\d+),usec=(\d+)/;
        END { my ($e, $x, $h) = map { $c{$_} // [0, 0] } qw(evalsha exists hmget);
              if ($e->[0] > $x->[0]) { printf "%d %.2f\n", $e->[0], $e->[1] / $e->[0] }
              elsif ($x->[0]) { printf "%d %.2f\n", $x->[0], ($h->[1] + $x->[1]) / $x->[0] }
              else { print "0 ?\n" } }') || true
read -r PLAIN_RPS PLAIN_P50 PLAIN_P99 PLAIN_ERR PLAIN_CPU < <(median "$DIR/plain")
read -r WARM_RPS WARM_P50 WARM_P99 WARM_ERR WARM_CPU < <(median "$DIR/warm")
read -r COLD_RPS COLD_P50 COLD_P99 COLD_ERR COLD_CPU < <(median "$DIR/cold")
# CPU per request, the median of its own column: steadier than requests/s
cpu_median() { awk '{ print $5 }' "$1" | sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
PLAIN_CPU=$(cpu_median "$DIR/plain"); WARM_CPU=$(cpu_median "$DIR/warm")
COLD_CPU=$(cpu_median "$DIR/cold")
REDIS_CPU=$(sort -n "$DIR/cold.redis" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }')

ratio() { perl -e 'printf "%.2f", $ARGV[0] / $ARGV[1]' "$1" "$2"; }
# each round's requests/s ratio of two configurations, in round order
per_round() { paste -d' ' "$1" "$2" | awk '{ printf "%.2f ", $6 / $1 }' | sed 's/ $//'; }
WARM_ROUNDS=$(per_round "$DIR/plain" "$DIR/warm")
COLD_ROUNDS=$(per_round "$DIR/plain" "$DIR/cold")
added() { perl -e 'printf "%.3f", $ARGV[0] - $ARGV[1]' "$1" "$2"; }

# invalidation latency: change, then poll until the change is visible
echo "measuring route change and revocation latency ..."
read -r ROUTE_MS REVOKE_MS < <(perl "$ROOT/bench/latency.pl" \
    --gateway "127.0.0.1:$P_WARM" --redis "127.0.0.1:$REDIS" \
    --key "$KEY0" --user u0 --sandbox sb --second "127.0.0.1:$RT2" \
    --first "127.0.0.1:$RT" --rounds 20)
seed_user 0

# many keys and routes: the same wrk script over 1 entry, then over N
echo "loading $N users, keys and routes ..."
perl "$ROOT/bench/load.pl" --count "$N" --addr "127.0.0.1:$RT" \
    | redis-cli -p "$REDIS" --pipe >/dev/null
# The client's work is the same whatever the number of keys: request i,
# i at random below SBX_M (default SBX_N), carries the key of user
# i mod SBX_N and a sequence header of its own, so each request is a new
# string for LuaJIT to build, one user or many (without the header, one
# user's requests would be one string, interned once: cheaper).  Nothing
# is prebuilt: a table of requests would crowd the caches the gateway's
# entries compete for.
cat > "$DIR/many.lua" <<'EOF'
local n = tonumber(os.getenv("SBX_N"))
local m = tonumber(os.getenv("SBX_M") or n)
math.randomseed(os.time())
request = function()
    local i = math.random(0, m - 1)
    return wrk.format("GET", "/proxy/sb/v1/shell/exec", {
        ["Authorization"] = string.format("Bearer sk_live_%032d", i % n),
        ["X-Bench-Seq"] = string.format("%08d", i) })
end
EOF
# warm every entry once so both runs measure the warm path
SBX_N=$N wrk -t1 -c"$CONN" -d"$(( N / 20000 + 2 ))s" -s "$DIR/many.lua" \
    "http://127.0.0.1:$P_WARM/" >/dev/null 2>&1 || true
# Runs are paired within each round in the order one, many, many, one
# (ABBA), so that the machine's drift, linear over a round, weighs on both
# alike; each round gives (many + many) / (one + one).  Plain nginx runs
# the same two scripts the same way: its ratio is the client's own cost of
# N distinct keys, and the round-to-round spread of a ratio that should be
# 1.00.
: > "$DIR/one"; : > "$DIR/many"; : > "$DIR/pone"; : > "$DIR/pmany"
# cached keys' uses reach Redis in batches (the script's EXISTS per key)
reported() { redis-cli -p "$REDIS" info commandstats \
                 | sed -n 's/^cmdstat_exists:calls=\([0-9]*\),.*/\1/p'; }
misses() { curl -s "http://127.0.0.1:$P_STATUS/" \
               | perl -MJSON::PP -0ne 'print decode_json($_)->{cache}{misses}'; }
abba() {    # url one-file many-file
    SBX_N=1 SBX_M=$N bench "$1" -s "$DIR/many.lua" >> "$2"
    SBX_N=$N bench "$1" -s "$DIR/many.lua" >> "$3"
    SBX_N=$N bench "$1" -s "$DIR/many.lua" >> "$3"
    SBX_N=1 SBX_M=$N bench "$1" -s "$DIR/many.lua" >> "$2"
}
REP0=$(reported); REP0=${REP0:-0}; T0=$(date +%s); MISS0=$(misses)
for _ in $(seq "$MANY_ROUNDS"); do
    abba "http://127.0.0.1:$P_WARM/" "$DIR/one" "$DIR/many"
    abba "http://127.0.0.1:$P_PLAIN/" "$DIR/pone" "$DIR/pmany"
done
MISSES=$(( $(misses) - MISS0 ))
read -r ONE_RPS ONE_P50 ONE_P99 ONE_ERR ONE_CPU < <(median "$DIR/one")
read -r MANY_RPS MANY_P50 MANY_P99 MANY_ERR MANY_CPU < <(median "$DIR/many")
ONE_CPU=$(cpu_median "$DIR/one"); MANY_CPU=$(cpu_median "$DIR/many")
read -r PONE_RPS PONE_P50 PONE_P99 PONE_ERR _ < <(median "$DIR/pone")
read -r PMANY_RPS PMANY_P50 PMANY_P99 PMANY_ERR _ < <(median "$DIR/pmany")
REP1=$(reported); REP_RATE=$(( (${REP1:-0} - REP0) / ($(date +%s) - T0 + 1) ))
# each round's ratio from its four runs (two lines of each file per round)
# of column $2: requests/s (1) or CPU per request (5), one/many or many/one
round_ratios() {    # one-file many-file column invert
    paste -d' ' - - < "$1" > "$DIR/r1"; paste -d' ' - - < "$2" > "$DIR/r2"
    paste -d' ' "$DIR/r1" "$DIR/r2" | awk -v c="$3" -v inv="$4" '{
        o = $c + $(c + 5); m = $(c + 10) + $(c + 15)
        printf "%.4f\n", inv ? o / m : m / o }'
}
round_ratios "$DIR/one" "$DIR/many" 1 0 > "$DIR/pairs"
round_ratios "$DIR/pone" "$DIR/pmany" 1 0 > "$DIR/ppairs"
round_ratios "$DIR/one" "$DIR/many" 5 1 > "$DIR/cpairs"
MANY_RATIO=$(median "$DIR/pairs" | xargs printf '%.2f')
PLAIN_MANY_RATIO=$(median "$DIR/ppairs" | xargs printf '%.2f')
MANY_CPU_RATIO=$(median "$DIR/cpairs" | xargs printf '%.2f')
ROUND_RATIOS=$(xargs printf '%.2f ' < "$DIR/pairs" | sed 's/ $//')
PLAIN_ROUND_RATIOS=$(xargs printf '%.2f ' < "$DIR/ppairs" | sed 's/ $//')

# many pods: the same $PODS users, their routes first all to one address,
# then each to its own; the difference is what the upstream keepalive pool
# pays to find a pod's connection among $PODS
echo "measuring $PODS users on one pod, then on $PODS pods ..."
: > "$DIR/onepod"; : > "$DIR/manypods"
for _ in $(seq "$ROUNDS"); do
    SBX_N=$PODS bench "http://127.0.0.1:$P_WARM/" -s "$DIR/many.lua" >> "$DIR/onepod"
done
for i in $(seq 0 $((PODS - 1))); do
    printf 'HSET sbx:route:u%d:sb addr %s\n' "$i" "$(pod_addr "$i")"
done | redis-cli -p "$REDIS" >/dev/null
redis-cli -p "$REDIS" PUBLISH sbx:events flush >/dev/null
for _ in $(seq "$ROUNDS"); do
    SBX_N=$PODS bench "http://127.0.0.1:$P_WARM/" -s "$DIR/many.lua" >> "$DIR/manypods"
done
read -r ONEPOD_RPS ONEPOD_P50 ONEPOD_P99 ONEPOD_ERR ONEPOD_CPU < <(median "$DIR/onepod")
read -r PODS_RPS PODS_P50 PODS_P99 PODS_ERR PODS_CPU < <(median "$DIR/manypods")
ONEPOD_CPU=$(cpu_median "$DIR/onepod"); PODS_CPU=$(cpu_median "$DIR/manypods")

STATUS=$(curl -s "http://127.0.0.1:$P_STATUS/")
read -r ENTRIES USED < <(perl -MJSON::PP -e \
    '$s = decode_json($ARGV[0])->{cache}; print "$s->{entries} $s->{used}\n"' "$STATUS")
PER_ENTRY=$(perl -e 'printf "%.0f", $ARGV[1] / ($ARGV[0] || 1)' "$ENTRIES" "$USED")

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
# SBX_BENCH_OUT: elsewhere than bench/RESULTS.md (a before/after's runs)
OUT=${SBX_BENCH_OUT:-$ROOT/bench/RESULTS.md}
# This script owns only the file's first section (everything before the
# first "## " heading); every "## " section after it (bench/syncd.pl's,
# bench/streams.pl's, notes added by hand) is kept as it is, in its place.
OTHER_SECTIONS=$(sed -n '/^## /,$p' "$OUT" 2>/dev/null || true)
{
cat <<EOF
# Benchmark results

Machine: $(nproc) cores, $CPU, $(free -g | awk '/Mem:/ {print $2}') GiB;
$(grep PRETTY_NAME /etc/os-release | cut -d'"' -f2); nginx 1.22.1; redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/').
Date: $(date -u +%Y-%m-%dT%H:%M:%SZ).
Command: \`bench/run.sh -d $DUR -c $CONN -n $N -r $ROUNDS -m $MANY_ROUNDS\` (wrk, 1 thread,
$CONN connections, $DUR s per run, configurations interleaved over $ROUNDS
rounds, median round shown; one nginx worker serves all three
configurations; the runtime is a separate one-worker nginx).

| configuration | requests/s | p50 ms | p99 ms | errors | worker CPU µs/request |
|---|---|---|---|---|---|
| 1. plain nginx proxy_pass + keepalive | $PLAIN_RPS | $PLAIN_P50 | $PLAIN_P99 | $PLAIN_ERR | $PLAIN_CPU |
| 2. gateway, auth + routing, cache warm | $WARM_RPS | $WARM_P50 | $WARM_P99 | $WARM_ERR | $WARM_CPU |
| 3. gateway, cache off | $COLD_RPS | $COLD_P50 | $COLD_P99 | $COLD_ERR | $COLD_CPU |

ratio warm/plain: $(ratio "$WARM_RPS" "$PLAIN_RPS")
ratio nocache/plain: $(ratio "$COLD_RPS" "$PLAIN_RPS")

Each round's own ratio, in order (the three runs of a round are back
to back): warm/plain $WARM_ROUNDS; nocache/plain $COLD_ROUNDS.

CPU per request, plain/gateway (the gateway worker's own cost, steadier
than requests/s on a shared machine; with the cache off Redis's CPU is
not counted): warm $(ratio "$PLAIN_CPU" "$WARM_CPU"), nocache $(ratio "$PLAIN_CPU" "$COLD_CPU").

Redis's time per lookup with the cache off: its commands' own
${LOOKUP_US:-?} µs (INFO commandstats: ${LOOKUPS:-0} lookups, their HMGETs and
EXISTS, or the EVALSHAs of a lookup script), and all of its CPU, I/O included, ${REDIS_CPU:-?} µs per cache-off
request (its process's ticks, the median run), on top of the worker's;
with wrk, the runtime and both nginx workers on the same two cores, every
µs of it is a µs less for the rest.

p99 added by the gateway (warm): $(added "$WARM_P99" "$PLAIN_P99") ms

| invalidation | median time to effect |
|---|---|
| route change (Redis write + publish → first request on the new pod) | $ROUTE_MS ms |
| key revocation (Redis write + publish → first 401) | $REVOKE_MS ms |

| many entries (warm cache, random user per request) | gateway req/s | gateway p99 ms | worker CPU µs/request | plain req/s (same script) |
|---|---|---|---|---|
| 1 user, key and route | $ONE_RPS | $ONE_P99 | $ONE_CPU | $PONE_RPS |
| $N users, keys and routes | $MANY_RPS | $MANY_P99 | $MANY_CPU | $PMANY_RPS |

ratio many/one: $MANY_RATIO

That is the median over $MANY_ROUNDS rounds of each round's gateway many/one, its
four runs in the order one, many, many, one so that drift weighs on both
alike. Rounds: $ROUND_RATIOS.

Plain nginx, the same two scripts the same way: $PLAIN_MANY_RATIO (rounds:
$PLAIN_ROUND_RATIOS): the client's own cost of $N distinct keys, and the
spread of a ratio that should be 1.00.

CPU per request one/many, median of the rounds: $MANY_CPU_RATIO.

Cache misses during these runs: $MISSES (\`sandbox_cache_ttl 1h\` on this
server: at the default 5m, $N entries in use are refilled about $((N / 270))
times a second, each a Redis lookup as in configuration 3). The gateway
reported about $REP_RATE key uses a second to Redis
(\`sandbox_last_used_interval\` 60s: each key in use once a minute).

| $PODS users (warm cache, keepalive 1024) | requests/s | p99 ms | errors | worker CPU µs/request |
|---|---|---|---|---|
| all routes to one pod address | $ONEPOD_RPS | $ONEPOD_P99 | $ONEPOD_ERR | $ONEPOD_CPU |
| each route to its own pod address | $PODS_RPS | $PODS_P99 | $PODS_ERR | $PODS_CPU |

ratio pods/onepod: $(ratio "$PODS_RPS" "$ONEPOD_RPS")

Shared zone: $ENTRIES entries use $USED bytes: about $PER_ENTRY bytes per entry.
EOF
if [ -n "$OTHER_SECTIONS" ]; then printf '\n%s\n' "$OTHER_SECTIONS"; fi
} > "$OUT.new"
mv "$OUT.new" "$OUT"
cat "$OUT"
grep -E '\[(alert|crit|emerg)\]' "$DIR/gw/error.log" && { echo "alerts in error.log"; exit 1; }
exit 0
