#!/bin/sh
# Fuzzes the pure parsers with libFuzzer (clang, libclang-rt-14-dev).
#   t/fuzz/run.sh [seconds]        default 30
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/fuzz
mkdir -p "$OUT/corpus"
clang -g -O1 -fsanitize=fuzzer,address,undefined -I"$ROOT/src" \
    -o "$OUT/fuzz_path" "$ROOT/t/fuzz/fuzz_path.c" \
    "$ROOT/src/sandbox_path.c" "$ROOT/src/sandbox_token.c"
# seeds: every case of the unit tests, as "uri NUL raw"
grep -v '^#' "$ROOT/t/unit/path_cases.txt" | awk -F'\t' -v d="$OUT/corpus" '
    { f = sprintf("%s/case%03d", d, NR); printf "%s%c%s", $1, 0, ($2 == "-" ? $1 : $2) > f; close(f) }'
"$OUT/fuzz_path" -max_total_time="${1:-30}" -print_final_stats=1 "$OUT/corpus" 2>&1 | tail -15
