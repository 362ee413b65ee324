#!/bin/sh
# Fuzzes the pure parsers, what comes from outside, with libFuzzer under
# ASan and UBSan (clang, libclang-rt-14-dev: scripts/install-deps.sh):
#
#   path   request paths and Authorization headers (sandbox_path.c,
#          sandbox_token.c)
#   body   the API's JSON bodies and ISO-8601 dates (sandbox_body.c)
#   event  sbx:events and sbx:ready messages (sandbox_event.c)
#   reply  Redis replies as RESP bytes: the route lookup's replies (the
#          key's, user's and route's HMGET, EXISTS) and pub/sub pushes
#          (sandbox_reply.c, sandbox_event.c)
#   agentkernel  the agentkernel API's routes, bodies, exec requests (the
#          shell form split back by an oracle) and runtime answers
#          (sandbox_agentkernel.c, sandbox_agentkernel_runtime.c)
#
#   t/fuzz/run.sh [seconds [target ...]]   each target for seconds (30),
#                                          all of them by default
#   t/fuzz/run.sh --smoke [target ...]     each target over its seeds and
#                                          2,000 mutations: a quick check
#
# Seeds come from the unit tests' cases (t/unit/) and t/fuzz/seeds/<target>;
# the corpus grows in build/fuzz/corpus/<target> (SBX_FUZZ_OUT moves
# build/fuzz).  A crashing input is saved as build/fuzz/<target>-crash-*,
# the others still run, and the script exits non-zero.  docs/fuzzing.md
# says more.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${SBX_FUZZ_OUT:-$ROOT/build/fuzz}
CC=${CLANG:-clang}
FUZZ=$ROOT/t/fuzz
UNIT=$ROOT/t/unit
SRC=$ROOT/src

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then
    SMOKE=1
    shift
    SECONDS_=0
else
    SECONDS_=${1:-30}
    [ $# -gt 0 ] && shift
fi

case "$SECONDS_" in
    ''|*[!0-9]*) echo "usage: $0 [seconds|--smoke] [target ...]" >&2; exit 2;;
esac

TARGETS=${*:-path body event reply agentkernel}

mkdir -p "$OUT"


build() {
    t=$1
    shift
    "$CC" -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -Wall -Wextra -Werror -I"$SRC" \
        -o "$OUT/fuzz_$t" "$FUZZ/fuzz_$t.c" "$@"
}


# seeds of a target, from its unit tests' cases, into $OUT/seeds/<target>
seed() {
    t=$1
    rm -rf "$OUT/seeds/$t"
    mkdir -p "$OUT/seeds/$t"
    [ -d "$FUZZ/seeds/$t" ] && cp "$FUZZ/seeds/$t"/* "$OUT/seeds/$t/"

    perl - "$t" "$UNIT" "$OUT/seeds/$t" <<'EOF'
use strict;
use warnings;

my ($t, $unit, $dir) = @ARGV;
my $n = 0;

sub out {
    my $f = sprintf("%s/unit%04d", $dir, $n++);
    open(my $fh, '>', $f) or die "$f: $!";
    binmode($fh);
    print $fh $_[0];
    close($fh);
}

sub slurp {
    open(my $fh, '<', $_[0]) or die "$_[0]: $!";
    local $/;
    my $s = <$fh>;
    $s =~ s/"\s*\n\s*"//g;          # adjacent literals, one string
    return $s;
}

# the C string literals of a test's source, escapes undone
sub literals {
    my @l;
    for (slurp($_[0]) =~ /"((?:[^"\\\n]|\\.)*)"/g) {
        my $s = $_;
        $s =~ s/\\(?:x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))/
            defined $1 ? chr(hex($1)) : defined $2 ? chr(oct($2))
            : { n => "\n", r => "\r", t => "\t" }->{$3} \/\/ $3/gex;
        push @l, $s;
    }
    return @l;
}

if ($t eq 'path') {
    open(my $in, '<', "$unit/path_cases.txt") or die "path_cases.txt: $!";
    while (<$in>) {
        next if /^#/ || !/\t/;
        chomp;
        my ($uri, $raw) = split /\t/, $_, -1;
        for ($uri, $raw) {
            s/\\(\\|t|x([0-9a-fA-F]{2}))/
              $1 eq "\\" ? "\\" : $1 eq "t" ? "\t" : chr(hex($2))/gex;
        }
        $raw = $uri if $raw eq "-";
        out("$uri\0$raw");
        out($raw);
    }
    out($_) for ("Bearer sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01",
                 "Bearer  x", "Bearer \t", "Bearer");

} elsif ($t eq 'body') {
    # the bodies and dates of test_body.c
    for (literals("$unit/test_body.c")) {
        out($_) if /^\s*[{\[]/ || /^\d{4}-/;
    }

} elsif ($t eq 'agentkernel') {
    # test_agentkernel.c's bodies and runtime answers, its paths as routes
    for (literals("$unit/test_agentkernel.c")) {
        out($_) if /^\{/;
        out("E$_") if /^\{/ && /data|success/;
        out("R\0$_") if m{^/};
    }

} elsif ($t eq 'event') {
    out($_) for grep { length($_) < 100 } literals("$unit/test_event.c");

} elsif ($t eq 'reply') {
    # test_reply.c's R(n, "b<bulk>", "s<status>", ...) as RESP
    my $src = slurp("$unit/test_reply.c");
    while ($src =~ /\bR\((\d+),((?:\s*"[^"]*"\s*,?)+)\)/g) {
        my ($count, $args) = ($1, $2);
        my $resp = "*$count\r\n";
        for my $el (($args =~ /"([^"]*)"/g)[0 .. $count - 1]) {
            my ($k, $v) = (substr($el, 0, 1), substr($el, 1));
            $resp .= $k eq 'b' ? sprintf("\$%d\r\n%s\r\n", length $v, $v)
                   : $k eq 's' ? "+$v\r\n"
                   : $k eq 'i' ? ":$v\r\n"
                   : $k eq 'e' ? "-$v\r\n"
                   : "\$-1\r\n";
        }
        out($resp);
    }
    # and its raw replies
    for (literals("$unit/test_reply.c")) {
        out($_) if /^[-+:\$*?]/;
    }
}
EOF
}


run() {
    t=$1
    log=$OUT/$t.log
    mkdir -p "$OUT/corpus/$t"

    if [ "$SMOKE" -eq 1 ]; then
        # the seeds, then a few mutations; nothing kept
        set -- -runs=2000 "$OUT/seeds/$t"
    else
        set -- -max_total_time="$SECONDS_" "$OUT/corpus/$t" "$OUT/seeds/$t"
    fi

    rc=0
    "$OUT/fuzz_$t" -print_final_stats=1 -dict="$FUZZ/$t.dict" \
        -artifact_prefix="$OUT/$t-" "$@" >"$log" 2>&1 || rc=$?

    # libFuzzer's last status line and its count of executions
    grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 \
        | sed "s/^/$t: /"
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/$t: /"

    if [ "$rc" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "$t: FAILED ($rc), the whole log is $log" >&2
    fi

    return "$rc"
}


status=0

for t in $TARGETS; do
    case $t in
        path)  build path "$SRC/sandbox_path.c" "$SRC/sandbox_token.c" ;;
        body)  build body "$SRC/sandbox_body.c" "$SRC/sandbox_path.c" \
                   -ljansson ;;
        event) build event "$SRC/sandbox_event.c" "$SRC/sandbox_path.c" ;;
        reply) build reply "$SRC/sandbox_reply.c" "$SRC/sandbox_event.c" \
                   "$SRC/sandbox_path.c" \
                   "$SRC/sandbox_limit.c" -lhiredis -ljansson ;;
        agentkernel) build agentkernel "$SRC/sandbox_agentkernel.c" \
                   "$SRC/sandbox_agentkernel_runtime.c" \
                   "$SRC/sandbox_path.c" -ljansson ;;
        *)     echo "$0: no target '$t' (path body event reply agentkernel)" >&2
               exit 2 ;;
    esac

    seed "$t"
    run "$t" || status=1
done

exit "$status"
