#!/usr/bin/env bash
# tests/fuzz/run.sh - build and run the libFuzzer targets.
#
#   tests/fuzz/run.sh build            [NAME...]   build only
#   tests/fuzz/run.sh regress          [NAME...]   build, then run every seed once
#   tests/fuzz/run.sh run SECONDS      [NAME...]   build, then fuzz each target SECONDS
#
# NAME is a target without the prefix (frame, bundle, ...); default: every
# tests/fuzz/fuzz_*.c.  Binaries go to tests/fuzz/build/, inputs found while
# fuzzing to tests/fuzz/build/corpus-NAME/ (the committed seeds in
# corpus/NAME/ are only read), crashes to tests/fuzz/build/artifacts/.
# FUZZ_ARGS adds libFuzzer options to every run (e.g. FUZZ_ARGS=-jobs=2).
# An input that takes longer than FUZZ_TIMEOUT seconds (default 30) counts
# as a hang and fails the run, in regress as well as run mode.
#
# Each target names what it links in its header comment, so a module in flux
# elsewhere in common/ cannot break it:
#    * fuzz-sources: common/frame.c common/buf.c common/errctx.c
#    * fuzz-pkgs: libzstd
#    * fuzz-libs: -lcsv            (libraries without a pkg-config file)
# A key may take several such lines (their values are joined) to keep a long
# list within the column limit.  Sources are relative to the repository root;
# build/schema_sql.c is made with `make build/schema_sql.c` when a target
# lists it.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$HERE/build
CC=${FUZZ_CC:-clang}
TIMEOUT=${FUZZ_TIMEOUT:-30}

# As in the Makefile, except -iquote for our headers: with -I, common/limits.h
# would be found for <limits.h> by system headers too.
CFLAGS=(-std=c17 -Wall -Wextra -Werror -g -O1 "-fsanitize=fuzzer,address,undefined"
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer
        -D_GNU_SOURCE -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK
        -iquote "$ROOT/common" -iquote "$ROOT/client" -iquote "$ROOT/build")

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The value of the "fuzz-KEY:" lines in a target's header comment, joined.
header_field() {
    sed -n "s/^ \* fuzz-$2:[[:space:]]*//p" "$1" | tr '\n' ' ' | sed 's/ *$//'
}


build_one() {
    local name=$1 src=$HERE/fuzz_$1.c sources pkgs flags=() libs=() extra=() s
    sources=$(header_field "$src" sources)
    pkgs=$(header_field "$src" pkgs)
    read -r -a extra <<<"$(header_field "$src" libs)"
    if [ -z "$sources" ]; then
        echo "run.sh: $src has no ' * fuzz-sources:' line" >&2
        exit 1
    fi
    for s in $sources; do
        if [ "$s" = build/schema_sql.c ]; then
            make -C "$ROOT" --no-print-directory build/schema_sql.c
        fi
    done
    if [ -n "$pkgs" ]; then
        # shellcheck disable=SC2086
        read -r -a flags <<<"$(pkg-config --cflags $pkgs)"
        # shellcheck disable=SC2086
        read -r -a libs <<<"$(pkg-config --libs $pkgs)"
    fi
    echo "== build fuzz_$name: $sources${pkgs:+ [$pkgs]}"
    # shellcheck disable=SC2086
    (cd "$ROOT" && "$CC" "${CFLAGS[@]}" "${flags[@]}" -o "$OUT/fuzz_$name" "$src" $sources \
        "${libs[@]}" "${extra[@]}")
}

# Every committed seed once, file by file, so each one is named in the log.
regress_one() {
    local name=$1 dir=$HERE/corpus/$1 files=()
    shopt -s nullglob
    files=("$dir"/*)
    shopt -u nullglob
    if [ ${#files[@]} -eq 0 ]; then
        echo "run.sh: no seeds in $dir" >&2
        exit 1
    fi
    echo "== regress fuzz_$name: ${#files[@]} seeds"
    # shellcheck disable=SC2086
    "$OUT/fuzz_$name" -runs=1 -timeout="$TIMEOUT" ${FUZZ_ARGS:-} "${files[@]}" \
        >"$OUT/regress-$name.log" 2>&1 || {
        cat "$OUT/regress-$name.log" >&2
        echo "run.sh: fuzz_$name failed on a seed; log in $OUT/regress-$name.log" >&2
        exit 1
    }
    grep -c '^Executed ' "$OUT/regress-$name.log" | sed 's/^/   executed: /'
}

fuzz_one() {
    local name=$1 seconds=$2
    mkdir -p "$OUT/corpus-$name" "$OUT/artifacts"
    echo "== fuzz fuzz_$name for ${seconds}s"
    # shellcheck disable=SC2086
    "$OUT/fuzz_$name" -max_total_time="$seconds" -timeout="$TIMEOUT" -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$name-" ${FUZZ_ARGS:-} \
        "$OUT/corpus-$name" "$HERE/corpus/$name" >"$OUT/fuzz-$name.log" 2>&1 || {
        tail -n 60 "$OUT/fuzz-$name.log" >&2
        echo "run.sh: fuzz_$name found a problem; log in $OUT/fuzz-$name.log," \
            "input in $OUT/artifacts/" >&2
        exit 1
    }
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+[[:space:]]+DONE' \
        "$OUT/fuzz-$name.log" | sed 's/^/   /'
}

[ $# -ge 1 ] || usage
mode=$1
shift
seconds=
if [ "$mode" = run ]; then
    if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
        usage
    fi
    seconds=$1
    shift
fi
case $mode in build | regress | run) ;; *) usage ;; esac

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for src in "$HERE"/fuzz_*.c; do
        src=${src##*/fuzz_}
        names+=("${src%.c}")
    done
fi
for name in "${names[@]}"; do
    [ -f "$HERE/fuzz_$name.c" ] || { echo "run.sh: no target $HERE/fuzz_$name.c" >&2; exit 2; }
done
mkdir -p "$OUT"
for name in "${names[@]}"; do
    build_one "$name"
done
for name in "${names[@]}"; do
    case $mode in
    regress) regress_one "$name" ;;
    run) fuzz_one "$name" "$seconds" ;;
    esac
done
