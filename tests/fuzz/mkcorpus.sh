#!/usr/bin/env bash
# tests/fuzz/mkcorpus.sh - writes the seed files in corpus/frame/ and
# corpus/zcodec/.  The seeds are committed; this script says how they were
# made and remakes them (needs printf and the zstd command).
#
# frame seeds follow fuzz_frame.c: frames back to back, and in a payload a
# script of fields, each a u8 opcode (low 3 bits: 0 u8, 1 u16, 2 u32, 3 u64,
# 4 bytes, 5 short string, 6 done, 7 long string; high 5 bits: byte count or
# string limit) followed by the field.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
F=$HERE/corpus/frame
Z=$HERE/corpus/zcodec
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$F" "$Z"

# ---- frame: valid ----------------------------------------------------------
printf '\x00\x00\x00\x05\x01hello' >"$F/valid-text"
printf '\x00\x00\x00\x00\x02' >"$F/valid-empty"
printf '\x00\x00\x00\x02\x03ab\x00\x00\x00\x00\x04\x00\x00\x00\x01\x05z' >"$F/valid-three"
# frame TYPE PRINTF-PAYLOAD: one frame with the length computed from the payload.
frame() {
    local n hdr
    n=$(printf '%b' "$2" | wc -c)
    printf -v hdr '\\x%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) \
        $((n & 255)) "$1"
    printf '%b%b' "$hdr" "$2"
}
# u8 7; u16 0x0102; u32; u64; 3 bytes; string "hello" (limit 8); long string "abc"; done
frame 16 '\x00\x07\x01\x01\x02\x02\xde\xad\xbe\xef\x03\x01\x02\x03\x04\x05\x06\x07\x08\x1cxyz\x45\x00\x05hello\x07\x00\x03abc\x06' \
    >"$F/valid-fields"
# ---- frame: invalid --------------------------------------------------------
printf '\x00\x00\x00' >"$F/bad-short-header"
printf '\x00\x00\x00\x0a\x01abcd' >"$F/bad-short-payload"
printf '\x02\x00\x00\x01\x01' >"$F/bad-over-frame-max"
printf '\xff\xff\xff\xff\x00' >"$F/bad-max-u32"
# string with an embedded NUL; string over its limit (5 bytes, limit 2); leftovers after done
printf '\x00\x00\x00\x06\x01\x45\x00\x03a\x00b' >"$F/bad-nul-in-string"
printf '\x00\x00\x00\x08\x01\x15\x00\x05hello' >"$F/bad-string-too-long"
printf '\x00\x00\x00\x03\x01\x06\x00\x00' >"$F/bad-leftovers"

# ---- zcodec: valid ---------------------------------------------------------
head -c 3000 "$HERE/fuzz_frame.c" >"$TMP/text"
zstd -3 -q -f --no-check -o "$Z/valid-sized" "$TMP/text"
zstd -3 -q -c <"$TMP/text" >"$Z/valid-unsized-checksum" # stdin: no content size
: >"$TMP/empty"
zstd -3 -q -f --no-check -o "$Z/valid-empty" "$TMP/empty"
{
    printf 'first,' | zstd -3 -q -c --no-check
    printf '\x50\x2a\x4d\x18\x03\x00\x00\x00xyz' # skippable frame
    printf 'second' | zstd -3 -q -c
} >"$Z/valid-concatenated"
# ---- zcodec: invalid -------------------------------------------------------
head -c 2097152 /dev/zero >"$TMP/zeros"
zstd -3 -q -f --no-check -o "$Z/bomb-sized-2mib" "$TMP/zeros"
zstd -3 -q -c --no-check <"$TMP/zeros" >"$Z/bomb-unsized-2mib"
head -c $(($(wc -c <"$Z/valid-sized") - 7)) "$Z/valid-sized" >"$Z/bad-truncated"
printf '\x28\xb5\x2f\xfd' >"$Z/bad-magic-only"
printf 'this is not zstd at all\n' >"$Z/bad-garbage"
{
    cat "$Z/valid-sized"
    printf '\x01\x02\x03'
} >"$Z/bad-trailing-bytes"
printf '\x50\x2a\x4d\x18\xff\xff\xff\x00ab' >"$Z/bad-skippable-truncated"
