#!/bin/sh
# Fuzzes the pure parsers (src/sandbox_path.c, src/sandbox_token.c) with
# libFuzzer under ASan and UBSan.  Needs clang and libclang-rt-14-dev.
#
#   t/fuzz/run.sh [seconds]        default 30
#
# The corpus starts from every case of t/unit/path_cases.txt ("uri NUL raw"
# and the raw path alone) and grows in build/fuzz/corpus; a crashing input
# is saved as build/fuzz/crash-* and the script exits non-zero.
set -eu

SECONDS_=${1:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/fuzz
CC=${CLANG:-clang}

mkdir -p "$OUT/corpus" "$OUT/seeds"

"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror -I"$ROOT/src" -o "$OUT/fuzz_path" \
    "$ROOT/t/fuzz/fuzz_path.c" "$ROOT/src/sandbox_path.c" \
    "$ROOT/src/sandbox_token.c"

# seeds, with the escapes of the cases file (\\ \t \xHH) undone
perl -e '
    my ($cases, $dir) = @ARGV;
    open(my $in, "<", $cases) or die "$cases: $!";
    my $n = 0;
    while (<$in>) {
        next if /^#/ || !/\t/;
        chomp;
        my ($uri, $raw) = split /\t/, $_, -1;
        for ($uri, $raw) {
            s/\\(\\|t|x([0-9a-fA-F]{2}))/
              $1 eq "\\" ? "\\" : $1 eq "t" ? "\t" : chr(hex($2))/gex;
        }
        $raw = $uri if $raw eq "-";
        for my $seed ("$uri\0$raw", $raw) {
            my $f = sprintf("%s/seed%04d", $dir, $n++);
            open(my $out, ">", $f) or die "$f: $!";
            binmode($out);
            print $out $seed;
            close($out);
        }
    }
    for my $v ("Bearer sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZab-_01",
               "Bearer  x", "Bearer \t", "Bearer") {
        my $f = sprintf("%s/seed%04d", $dir, $n++);
        open(my $out, ">", $f) or die "$f: $!";
        print $out $v;
        close($out);
    }
' "$ROOT/t/unit/path_cases.txt" "$OUT/seeds"

cat > "$OUT/path.dict" <<'EOF'
"/proxy/"
"/alice/sb"
"/.."
"/."
"//"
"?"
"#"
"%2e"
"%2E"
"%2f"
"%2F"
"%5c"
"%5C"
"%00"
"%0a"
"%7f"
"%20"
"%25"
"\\"
"\x00"
"Bearer "
"sk_live_"
EOF

rc=0
"$OUT/fuzz_path" -max_total_time="$SECONDS_" -print_final_stats=1 \
    -dict="$OUT/path.dict" -artifact_prefix="$OUT/" \
    "$OUT/corpus" "$OUT/seeds" >"$OUT/last.log" 2>&1 || rc=$?

tail -25 "$OUT/last.log"

if [ "$rc" -ne 0 ]; then
    echo "fuzz_path: FAILED ($rc), the whole log is $OUT/last.log" >&2
fi

exit "$rc"
