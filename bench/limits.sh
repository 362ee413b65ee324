#!/bin/bash
# Benchmark of the data plane's limits (issue 13): the warm path with
# limits configured (a rate and concurrency per key and per user, none
# ever refusing) against the same warm path without them, with one key
# and with N keys, and the limit zone's shared memory per tracked key.
# Appends (or replaces) its own section, "## Limits", of bench/RESULTS.md.
#
#   bench/limits.sh [-d seconds] [-c connections] [-n keys] [-r rounds]
#
# One nginx with one worker serves both ports, which differ only in the
# two sandbox_limit_* lines; the limit zone exists for both (so the port
# without limits pays what any request pays when no limit applies to it).
# Runs are paired in each round in the order without, with, with, without
# (ABBA), so that the machine's drift weighs on both alike; the ratio is
# the median of the rounds' ratios.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=5
CONN=32
N=100000
ROUNDS=5
while getopts "d:c:n:r:" o; do
    case $o in
        d) DUR=$OPTARG ;;
        c) CONN=$OPTARG ;;
        n) N=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        *) echo "usage: $0 [-d seconds] [-c connections] [-n keys] [-r rounds]"; exit 2 ;;
    esac
done

MODULE=$ROOT/build/ngx_http_sandbox_module.so
[ -f "$MODULE" ] || make -C "$ROOT" module
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk"; exit 1; }

DIR=$(mktemp -d /tmp/sandbox-bench-limits.XXXXXX)
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

REDIS=$(free_port); RT=$(free_port)
P_WARM=$(free_port); P_LIM=$(free_port); P_STATUS=$(free_port)

redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$DIR/redis.log" &
pids+=($!)

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
        location / {
            default_type application/json;
            return 200 '{"success":true,"message":"Operation successful","data":{"session_id":"s1","command":"true","status":"completed","output":"ok\\n","exit_code":0}}';
        }
    }
}
EOF
/usr/sbin/nginx -p "$DIR/rt/" -c "$DIR/rt/nginx.conf" -g 'daemon off;' &
pids+=($!)

# limits that never refuse: the cost of checking them, not of refusing
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
    sandbox_cache_ttl 1h;
    sandbox_limit_zone limits:128m;

    upstream sandbox_pods { sandbox_balancer keepalive=1024; }

    server {
        listen 127.0.0.1:$P_WARM;
        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$P_LIM;
        location / {
            sandbox_limit_rate 1000000r/s burst=1000000;
            sandbox_limit_concurrency key=100000 user=100000;
            sandbox_route on;
            proxy_pass http://sandbox_pods;
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
echo "loading $N users, keys and routes ..."
perl "$ROOT/bench/load.pl" --count "$N" --addr "127.0.0.1:$RT" \
    | redis-cli -p "$REDIS" --pipe >/dev/null

/usr/sbin/nginx -p "$DIR/gw/" -c "$DIR/gw/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$P_STATUS/" && break; sleep 0.1; done

# the same request script as bench/run.sh's many-entries runs
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

worker_ticks() {
    awk '{ print $14 + $15 }' "/proc/$(pgrep -P "$(cat "$DIR/gw/nginx.pid")" | head -1)/stat"
}

# prints "rps p50_ms p99_ms errors worker_cpu_us_per_request"
bench() {   # url [extra wrk args...]
    local url=$1 t0 t1; shift
    t0=$(worker_ticks)
    wrk -t1 -c"$CONN" -d"${DUR}s" --latency "$@" "$url" > "$DIR/wrk.out" 2>&1
    t1=$(worker_ticks)
    TICKS=$((t1 - t0)) HZ=$(getconf CLK_TCK) perl -ne '
        sub ms { my ($v, $u) = @_; $u eq "us" ? $v / 1000 : $u eq "s" ? $v * 1000 : $v }
        $rps = $1 if /^Requests\/sec:\s+([\d.]+)/;
        $p50 = ms($1, $2) if /^\s+50%\s+([\d.]+)(us|ms|s)/;
        $p99 = ms($1, $2) if /^\s+99%\s+([\d.]+)(us|ms|s)/;
        $err += $1 if /Non-2xx or 3xx responses:\s+(\d+)/;
        $err += $1 + $2 + $3 + $4 if /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
        $n = $1 if /^\s+(\d+) requests in/;
        END { printf "%.0f %.3f %.3f %d %.1f\n", $rps, $p50, $p99, $err || 0,
                     $n ? 1e6 * $ENV{TICKS} / $ENV{HZ} / $n : 0 }' "$DIR/wrk.out"
}

median() { sort -n "$1" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
limits_json() {
    curl -s "http://127.0.0.1:$P_STATUS/" \
        | perl -MJSON::PP -0ne '$l = decode_json($_)->{limits};
              print join(" ", map { $l->{$_} } qw(used keys users refused_rate
                                                   refused_concurrency full)), "\n"'
}

# every entry warm in the cache, and tracked by the limits, before
# measuring: each key once, in order, on both ports
cat > "$DIR/warm.lua" <<'EOF'
local n = tonumber(os.getenv("SBX_N"))
local i = tonumber(os.getenv("SBX_FROM") or "0") - 1
request = function()
    i = i + 1
    if i >= n then i = 0 end
    return wrk.format("GET", "/proxy/sb/v1/shell/exec", {
        ["Authorization"] = string.format("Bearer sk_live_%032d", i) })
end
EOF
echo "warming $N keys on both ports ..."
for p in $P_WARM $P_LIM; do
    # one connection, so the keys go in order; resumed where it stopped
    from=0
    while [ "$from" -lt "$N" ]; do
        SBX_N=$N SBX_FROM=$from wrk -t1 -c1 -d5s -s "$DIR/warm.lua" \
            "http://127.0.0.1:$p/" > "$DIR/warm.out" 2>&1 || true
        done_n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$DIR/warm.out")
        [ "${done_n:-0}" -gt 0 ] || break
        from=$((from + done_n))
    done
done
read -r USED0 KEYS0 USERS0 _ < <(limits_json)

run() {     # label n m
    local label=$1
    : > "$DIR/$label.warm"; : > "$DIR/$label.lim"
    for _ in $(seq "$ROUNDS"); do
        SBX_N=$2 SBX_M=$3 bench "http://127.0.0.1:$P_WARM/" -s "$DIR/many.lua" >> "$DIR/$label.warm"
        SBX_N=$2 SBX_M=$3 bench "http://127.0.0.1:$P_LIM/" -s "$DIR/many.lua" >> "$DIR/$label.lim"
        SBX_N=$2 SBX_M=$3 bench "http://127.0.0.1:$P_LIM/" -s "$DIR/many.lua" >> "$DIR/$label.lim"
        SBX_N=$2 SBX_M=$3 bench "http://127.0.0.1:$P_WARM/" -s "$DIR/many.lua" >> "$DIR/$label.warm"
    done
    # each round: (with + with) / (without + without), requests/s
    paste -d' ' - - < "$DIR/$label.warm" > "$DIR/r1"
    paste -d' ' - - < "$DIR/$label.lim" > "$DIR/r2"
    paste -d' ' "$DIR/r1" "$DIR/r2" | awk '{ printf "%.4f\n", ($11 + $16) / ($1 + $6) }' \
        > "$DIR/$label.ratios"
}

LOAD0=$(cut -d' ' -f1 /proc/loadavg)
echo "measuring one key ($ROUNDS rounds) ..."
run one 1 "$N"
echo "measuring $N keys ($ROUNDS rounds) ..."
run many "$N" "$N"

read -r W1 W1_P50 W1_P99 W1_ERR W1_CPU < <(median "$DIR/one.warm")
read -r L1 L1_P50 L1_P99 L1_ERR L1_CPU < <(median "$DIR/one.lim")
read -r WN WN_P50 WN_P99 WN_ERR WN_CPU < <(median "$DIR/many.warm")
read -r LN LN_P50 LN_P99 LN_ERR LN_CPU < <(median "$DIR/many.lim")
R1=$(median "$DIR/one.ratios" | xargs printf '%.2f')
cpu_median() { awk '{ print $5 }' "$1" | sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
C1=$(perl -e 'printf "%.2f", $ARGV[0] / $ARGV[1]' "$(cpu_median "$DIR/one.warm")" "$(cpu_median "$DIR/one.lim")")
CN=$(perl -e 'printf "%.2f", $ARGV[0] / $ARGV[1]' "$(cpu_median "$DIR/many.warm")" "$(cpu_median "$DIR/many.lim")")
RN=$(median "$DIR/many.ratios" | xargs printf '%.2f')
R1S=$(xargs printf '%.2f ' < "$DIR/one.ratios" | sed 's/ $//')
RNS=$(xargs printf '%.2f ' < "$DIR/many.ratios" | sed 's/ $//')

LOAD1=$(cut -d' ' -f1 /proc/loadavg)
read -r USED KEYS USERS REF_RATE REF_CONC FULL < <(limits_json)
PER_KEY=$(perl -e 'printf "%.0f", $ARGV[0] / ($ARGV[1] + $ARGV[2])' "$USED" "$KEYS" "$USERS")

OUT=$ROOT/bench/RESULTS.md
SECTION=$DIR/section.md
cat > "$SECTION" <<EOF
## Limits

Date: $(date -u +%Y-%m-%dT%H:%M:%SZ). Command: \`bench/limits.sh -d $DUR -c $CONN -n $N -r $ROUNDS\`
(wrk, 1 thread, $CONN connections, $DUR s per run; one nginx worker serves
both ports; the warm path of \`bench/run.sh\`, cache warm, every key tracked
by the limit zone before measuring). "with limits":
\`sandbox_limit_rate 1000000r/s burst=1000000;
sandbox_limit_concurrency key=100000 user=100000;\` (every request takes its
rate and both slots, none is refused); "without": the same server without
those two lines (the zone exists; no limit applies, so no lock is taken).

Load average (1 min) of the machine at the start and at the end of the
measurements: $LOAD0, $LOAD1 ($(nproc) cores; other work shares them).

| run | requests/s | p50 ms | p99 ms | errors | worker CPU µs/request |
|---|---|---|---|---|---|
| 1 key, without limits | $W1 | $W1_P50 | $W1_P99 | $W1_ERR | $W1_CPU |
| 1 key, with limits | $L1 | $L1_P50 | $L1_P99 | $L1_ERR | $L1_CPU |
| $N keys, without limits | $WN | $WN_P50 | $WN_P99 | $WN_ERR | $WN_CPU |
| $N keys, with limits | $LN | $LN_P50 | $LN_P99 | $LN_ERR | $LN_CPU |

ratio limits/warm: $R1

(one key; the median of $ROUNDS rounds, each in the order without, with,
with, without: $R1S)

ratio limits/warm ($N keys): $RN (rounds: $RNS)

Worker CPU per request, without/with (the worker's own cost, steadier
than requests/s on a shared machine; medians of the runs): one key $C1,
$N keys $CN.

Refused during the runs: $REF_RATE for rate, $REF_CONC for concurrency; zone
full: $FULL times.

Shared memory per tracked key: $PER_KEY bytes ($USED bytes of the limit
zone for $KEYS keys and $USERS users, each an entry: a user is tracked only
for its concurrency). The zone's size for K keys and U users is about
$PER_KEY × (K + U) bytes plus 8 pages.
EOF

# replace this section if it is there, keep everything else
export SECTION
if grep -q '^## Limits$' "$OUT" 2>/dev/null; then
    perl -0pi -e 'BEGIN { local $/; open my $f, "<", $ENV{SECTION} or die; $s = <$f> }
                  s/^## Limits\n.*?(?=^## |\z)/$s\n/ms' "$OUT"
else
    printf '\n' >> "$OUT"
    cat "$SECTION" >> "$OUT"
fi
cat "$SECTION"
grep -E '\[(alert|crit|emerg)\]' "$DIR/gw/error.log" && { echo "alerts in error.log"; exit 1; }
exit 0
