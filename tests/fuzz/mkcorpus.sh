#!/usr/bin/env bash
# tests/fuzz/mkcorpus.sh - writes the seed files in corpus/NAME/ for the
# fuzz targets named (default: frame zcodec bundle changeset_check proto
# gittree).  The seeds are committed; this script says how they were made and
# remakes them
# (needs printf, the zstd command and the sqlite3 shell).
#
# frame seeds follow fuzz_frame.c: frames back to back, and in a payload a
# script of fields, each a u8 opcode (low 3 bits: 0 u8, 1 u16, 2 u32, 3 u64,
# 4 bytes, 5 short string, 6 done, 7 long string; high 5 bits: byte count or
# string limit) followed by the field.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
F=$HERE/corpus/frame
Z=$HERE/corpus/zcodec
B=$HERE/corpus/bundle
C=$HERE/corpus/changeset_check
P=$HERE/corpus/proto
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

seeds_frame() {
    mkdir -p "$F"
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
}

seeds_zcodec() {
    mkdir -p "$Z"
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
}

# ---- bundle ----------------------------------------------------------------
# Fields as the hub writes them (cJSON_Print: tabs, in this order), with short
# dummy PEM blocks that pass the marker checks instead of a real key.
B_KEYS=(format version site_id hub_address schema ca_cert site_cert site_key)
B_CERT='"-----BEGIN CERTIFICATE-----\nMIIBfDCCASGgAwIBAgIRAOriKkf7LMYzERq6wPPfccowCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n"'
B_KEY='"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZHVtbXkgZHVt\n-----END PRIVATE KEY-----\n"'
declare -A B_DEF=([format]='"empact-join"' [version]=1 [site_id]='"toronto"'
    [hub_address]='"127.0.0.1:7443"'
    [schema]='"04130085ccc22c2f2f7b5712686ac7c1a05b460b1f32041698d88bee982bc9b8"'
    [ca_cert]=$B_CERT [site_cert]=$B_CERT [site_key]=$B_KEY)

# bundle NAME [KEY=JSON...]: the default bundle with each KEY's raw JSON value
# replaced (KEY= drops the field; an unknown KEY is added at the end).
bundle() {
    local name=$1 kv k sep='' keys=("${B_KEYS[@]}")
    local -A f
    shift
    for k in "${B_KEYS[@]}"; do f[$k]=${B_DEF[$k]}; done
    for kv in "$@"; do
        k=${kv%%=*}
        [ -n "${f[$k]+set}" ] || keys+=("$k")
        f[$k]=${kv#*=}
    done
    {
        printf '{\n'
        for k in "${keys[@]}"; do
            [ -n "${f[$k]}" ] || continue
            printf '%s\t"%s":\t%s' "$sep" "$k" "${f[$k]}"
            sep=$',\n'
        done
        printf '\n}\n'
    } >"$B/$name"
}

# N copies of the character C.
rep() { printf "%$1s" '' | tr ' ' "$2"; }

seeds_bundle() {
    mkdir -p "$B"
    # valid
    bundle valid-hub-format
    tr -d '\n\t' <"$B/valid-hub-format" >"$B/valid-compact"
    bundle valid-ipv6 hub_address='"[::1]:7443"'
    bundle valid-hostname hub_address='"hub.example.org:443"' site_id='"k-w-3"'
    bundle valid-site-id-32 site_id="\"$(rep 32 a)\""
    bundle valid-escapes \
        site_cert='"\u002d----BEGIN CERTIFICATE-----\r\n\/\u00e9\ud83d\ude00==\n-----END CERTIFICATE-----"'
    bundle valid-extra-field note='{"a": [1, 2.5e3, true, null]}'
    bundle valid-duplicate-key site_id='"toronto"' site_id2='"x"'
    sed -i 's/"site_id2"/"site_id"/' "$B/valid-duplicate-key"
    { cat "$B/valid-compact"; printf ' trailing'; } >"$B/odd-trailing-garbage"
    # damaged JSON
    : >"$B/bad-empty"
    head -c 200 "$B/valid-hub-format" >"$B/bad-truncated-in-string"
    head -c 315 "$B/valid-hub-format" >"$B/bad-truncated-between-fields"
    head -c -3 "$B/valid-hub-format" >"$B/bad-truncated-end"
    printf '["empact-join", 1]' >"$B/bad-not-object"
    printf '"empact-join"' >"$B/bad-string"
    {
        printf '{"format": "empact-join", "version": 1, "note": '
        rep 1100 '['
        rep 1100 ']'
        printf '}'
    } >"$B/bad-deep-nesting"
    printf '{"format": "empact-join", "version": 1, "site_id": "tor\\ud800x"}' \
        >"$B/bad-lone-surrogate"
    # wrong types and values
    bundle bad-format format='"empact-joint"'
    bundle bad-format-missing format=
    bundle bad-format-long format="\"$(rep 40 x)\""
    bundle bad-version-2 version=2
    bundle bad-version-string version='"1"'
    bundle bad-version-float version=1.0000001
    bundle bad-site-id-number site_id=42
    bundle bad-site-id-null site_id=null
    bundle bad-site-id-missing site_id=
    bundle bad-site-id-upper site_id='"Toronto"'
    bundle bad-site-id-dash site_id='"-toronto"'
    bundle bad-site-id-path site_id='"../etc"'
    bundle bad-site-id-empty site_id='""'
    bundle bad-site-id-33 site_id="\"$(rep 33 a)\""
    # cJSON ends a string at an escaped NUL: this parses as site "tor"
    bundle odd-site-id-nul site_id='"tor\u0000onto"'
    bundle bad-schema-short schema='"0413"'
    bundle bad-schema-upper schema='"04130085CCC22C2F2F7B5712686AC7C1A05B460B1F32041698D88BEE982BC9B8"'
    bundle bad-schema-object schema='{}'
    bundle bad-address-no-port hub_address='"127.0.0.1"'
    bundle bad-address-empty-host hub_address='":7443"'
    bundle bad-address-port-big hub_address='"127.0.0.1:70000"'
    bundle bad-address-port-long hub_address='"127.0.0.1:000007443"'
    bundle bad-address-port-sign hub_address='"127.0.0.1:-1"'
    bundle bad-address-v6-unclosed hub_address='"[::1:7443"'
    bundle bad-address-256 hub_address="\"$(rep 250 h):7443\""
    bundle bad-pem-key-is-cert site_key="$B_CERT"
    bundle bad-pem-no-begin ca_cert='"CERTIFICATE"'
    bundle bad-pem-array ca_cert="[$B_CERT]"
    bundle bad-pem-missing site_key=
    # huge strings: a PEM over PEM_MAX, a file over JOIN_BUNDLE_MAX
    local big
    big="\"-----BEGIN CERTIFICATE-----\\n$(rep 16384 A)\\n-----END CERTIFICATE-----\""
    bundle bad-pem-16k site_cert="$big"
    bundle bad-over-64k note="\"$(rep 65536 z)\""
}

# ---- changeset_check -------------------------------------------------------
# cs NAME KIND SCHEMA SETUP CHANGES: a changeset (KIND changeset) or patchset
# recorded by the sqlite3 shell's session over every table of SCHEMA (SQL
# text), for the statements CHANGES run after SETUP.
cs() {
    rm -f "$TMP/cs.db"
    printf '%s\n' "$3" "$4" '.session open main s' '.session attach *' "$5" \
        ".session $2 $C/$1" '.session close' | sqlite3 -bail "$TMP/cs.db"
}
# The real schema, as schema_load() runs it.
real_schema() {
    printf '%s\n' 'CREATE TABLE schema_class(name TEXT PRIMARY KEY, class TEXT NOT NULL);'
    cat "$ROOT/schema/schema.sql"
}

seeds_changeset_check() {
    local S R MV
    S=$(real_schema)
    mkdir -p "$C"
    R="INSERT INTO resource (id, title, url, kind, language, phm_component, oht_block,
        population_group, added_by_site, updated_at) VALUES ('r1', 'Equity toolkit',
        'https://example.org/t', 'toolkit', 'fr', 'implementation and reach', 3,
        'older adults', 'toronto', '2026-01-02T03:04:05Z');"
    MV="INSERT INTO metric_value VALUES ('toronto', 'ed-visits', '2026-Q3', 12.5, 0, 'x'),
        ('toronto', 'ed-visits', '2026-Q2', NULL, 1, NULL);"
    # accepted
    : >"$C/valid-empty"
    cs valid-resource-insert changeset "$S" '' "$R"
    cs valid-resource-update changeset "$S" "$R" \
        "UPDATE resource SET title = 'Toolkit v2', summary = x'00ff10', oht_block = NULL;"
    cs valid-resource-delete changeset "$S" "$R" "DELETE FROM resource;"
    cs valid-metric-value-insert changeset "$S" '' "$MV"
    cs valid-metric-value-update changeset "$S" "$MV" \
        "UPDATE metric_value SET value = 9223372036854775807, suppressed = 1;"
    cs valid-metric-value-delete changeset "$S" "$MV" "DELETE FROM metric_value;"
    cs valid-mixed changeset "$S" "$R" "$MV
        INSERT INTO resource (id, title) VALUES ('r2', 'é ü ' || char(0) || 'x'), ('r3', '');
        UPDATE resource SET summary = -1.5e300 WHERE id = 'r1';"
    cs bad-patchset-mixed patchset "$S" "$R $MV" \
        "UPDATE resource SET title = 't2'; DELETE FROM metric_value WHERE period = '2026-Q2';
         INSERT INTO resource (id, title) VALUES ('r9', 'nine');"
    cat "$C/valid-metric-value-insert" "$C/valid-metric-value-update" \
        >"$C/valid-concat-insert-update"
    # refused: other site's rows, local and hub tables
    cs refused-other-site-insert changeset "$S" '' \
        "INSERT INTO metric_value VALUES ('ottawa', 'ed-visits', '2026-Q3', 1, 0, NULL);"
    cs refused-other-site-update changeset "$S" "${MV//toronto/ottawa}" \
        "UPDATE metric_value SET value = 0;"
    cs refused-other-site-delete changeset "$S" "${MV//toronto/ottawa}" \
        "DELETE FROM metric_value;"
    cs refused-mixed-sites changeset "$S" '' "$MV ${MV//toronto/ottawa}"
    cs refused-member-local changeset "$S" '' \
        "INSERT INTO member (name, contact) VALUES ('Ann', 'ann@example.org');"
    cs refused-valid-then-member changeset "$S" '' "$R
        INSERT INTO member (id, name) VALUES (7, 'Bob');"
    cs refused-metric-hub changeset "$S" \
        "INSERT INTO metric VALUES ('ed-visits', 'ED visits', 'count', NULL, 5);" \
        "UPDATE metric SET suppress_below = 0;"
    cs refused-site-hub changeset "$S" '' "INSERT INTO site VALUES ('evil', 'Evil', NULL, NULL);"
    cs bad-patchset-member patchset "$S" "INSERT INTO member VALUES (1, 'A', NULL, NULL);" \
        "UPDATE member SET notes = 'n'; DELETE FROM member;"
    # refused: shapes that do not fit the schema
    cs refused-unknown-table changeset 'CREATE TABLE evil (k TEXT PRIMARY KEY, v);' '' \
        "INSERT INTO evil VALUES ('a', 1);"
    cs refused-resource-fewer-columns changeset \
        'CREATE TABLE resource (id TEXT PRIMARY KEY, title TEXT);' '' \
        "INSERT INTO resource VALUES ('r1', 't');"
    cs refused-metric-value-other-key changeset \
        'CREATE TABLE metric_value (site_id, metric, period, value, suppressed, updated_at,
         PRIMARY KEY (metric, period)) WITHOUT ROWID;' '' \
        "INSERT INTO metric_value VALUES ('ottawa', 'm', 'p', 1, 0, NULL);"
    cs refused-site-id-blob changeset \
        'CREATE TABLE metric_value (site_id, metric, period, value, suppressed, updated_at,
         PRIMARY KEY (site_id, metric, period)) WITHOUT ROWID;' '' \
        "INSERT INTO metric_value VALUES (CAST('toronto' AS BLOB), 'm', 'p', 1, 0, NULL);"
    cs refused-site-id-integer changeset \
        'CREATE TABLE metric_value (site_id, metric, period, value, suppressed, updated_at,
         PRIMARY KEY (site_id, metric, period)) WITHOUT ROWID;' '' \
        "INSERT INTO metric_value VALUES (7, 'm', 'p', 1, 0, NULL);"
    # damaged bytes
    printf 'this is not a changeset\n' >"$C/bad-garbage"
    head -c -4 "$C/valid-mixed" >"$C/bad-truncated"
    # table headers cut short, on which SQLite 3.40's iterator loops for ever
    # unless changeset.c refuses them first (found by this target, fixed)
    head -c 20 "$C/valid-metric-value-insert" >"$C/bad-hang-truncated-name"
    printf 'T' >"$C/bad-hang-one-byte"
    printf 'P\x03\x01' >"$C/bad-hang-patchset-key-flags"
    { cat "$C/valid-resource-insert"; printf 'T\x06\x01\x01\x01\x00\x00\x00metric_value'; } \
        >"$C/bad-hang-second-header"
    # a site_id with an embedded NUL once passed as the pushing site's (fixed)
    cs refused-site-id-nul changeset "$S" '' "INSERT INTO metric_value
        VALUES ('toronto' || char(0) || 'ottawa', 'ed-visits', '2026-Q3', 1, 0, NULL);"
    # changes whose key, or an inserted value, is "undefined" (type 0): they
    # crashed SQLite's apply and the hub's merge until the check refused them
    local mv='T\x06\x01\x02\x03\x00\x00\x00metric_value\x00' tor='\x03\x07toronto'
    local ed='\x03\x09ed-visits' zero='\x01\x00\x00\x00\x00\x00\x00\x00\x00'
    printf '%b' "$mv\\x17\\x00$tor\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x05\\x00\\x00" \
        >"$C/refused-key-missing-update"
    printf '%b' "$mv\\x09\\x00$tor$ed\\x00\\x05\\x05\\x05" >"$C/refused-key-missing-delete"
    printf '%b' "$mv\\x12\\x00$tor$ed\\x00\\x05$zero\\x05" >"$C/refused-key-missing-insert"
    printf '%b' "$mv\\x12\\x00$tor$ed\\x03\\x072026-Q4\\x00$zero\\x05" \
        >"$C/refused-key-missing-insert-value"
    printf 'T\x03\x01\x00\x00resource\x00' >"$C/odd-header-only"
    printf 'T\x00resource\x00\x12\x00' >"$C/bad-zero-columns"
    printf 'T\x01\x01resource\x00\x12\x00\x03\xff\xff\xff\xff\x0fabc' >"$C/bad-huge-length"
    printf 'X\x01\x01resource\x00' >"$C/bad-table-marker"
}

# ---- proto -----------------------------------------------------------------
# A seed is a frame type byte and a payload (fuzz_proto.c).  msg NAME TYPE
# PAYLOAD writes one, and from a valid one (NAME valid-*) also the payload cut
# short by one byte and with one byte too many.
msg() {
    printf '%b%b' "$2" "$3" >"$P/$1"
    case $1 in
    valid-*)
        head -c -1 "$P/$1" >"$P/bad-${1#valid-}-cut"
        { cat "$P/$1"; printf 'x'; } >"$P/bad-${1#valid-}-trailing"
        ;;
    esac
}

# The printf %b escapes of a u16-length string.
str() { printf '\\x%02x\\x%02x%s' $((${#1} >> 8)) $((${#1} & 255)) "$1"; }

seeds_proto() {
    local u64='\x00\x00\x00\x00\x00\x00\x00\x07' fp oid zcs
    mkdir -p "$P"
    fp=$(printf '\\x%02x' $(seq 1 32))    # a schema fingerprint or push id
    oid=$(printf '\\x%02x' $(seq 101 120)) # a commit or tree id
    # a zstd frame holding a changeset table header
    zcs=$(printf 'T\x01\x01resource\x00' | zstd -3 -q -c --no-check | od -An -v -tx1 |
        tr -s ' \n' ' ' | sed 's/^ //; s/ $//; s/ /\\x/g; s/^/\\x/')
    msg valid-hello '\x01' "\\x00\\x05$fp\\x12\\x34\\x56\\x78"
    msg valid-hello-proto-3 '\x01' "\\x00\\x03$fp"
    msg bad-hello-proto-1 '\x01' "\\x00\\x01$fp"
    msg valid-welcome '\x02' "\\x00\\x05$u64\\x00\\x00\\x00\\x00"
    msg valid-welcome-proto-3 '\x02' "\\x00\\x03$u64"
    msg valid-push '\x10' "$fp$u64\\x00\\x00\\x00\\x1e\\x00\\x00\\x00\\x02$zcs"
    msg valid-push-no-times '\x10' "$fp$u64\\x00\\x00\\x00\\x0e\\x00\\x00\\x00\\x00$zcs"
    msg valid-push-empty-z '\x10' "$fp$u64\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
    msg bad-push-times-overflow '\x10' "$fp$u64\\x00\\x00\\x00\\x0e\\xff\\xff\\xff\\xff$u64"
    msg bad-push-raw-over-limit '\x10' "$fp$u64\\x10\\x00\\x00\\x01\\x00\\x00\\x00\\x00$zcs"
    msg valid-push-ok '\x11' "$u64\\x01\\x00\\x00\\x00\\x03\\x00\\x00\\x00\\x01"
    msg valid-pull '\x20' "$u64$u64$u64"
    msg valid-own-version '\x24' "$u64$oid$oid$u64"
    msg valid-dict-get '\x50' ''
    msg valid-dict '\x51' "\\x00\\x00\\x00\\x07$(rep 300 d)"
    msg bad-dict-id-0 '\x51' "\\x00\\x00\\x00\\x00$(rep 300 d)"
    msg bad-dict-small '\x51' "\\x00\\x00\\x00\\x07$(rep 30 d)"
    msg valid-version '\x21' "$u64$oid$oid$u64$(str toronto)\\x00\\x00\\x00\\x0e$zcs"
    msg valid-version-empty-author '\x21' "$u64$oid$oid$u64\\x00\\x00\\x00\\x00\\x00\\x00"
    msg bad-version-author-40 '\x21' "$u64$oid$oid$u64$(str "$(rep 40 a)")\\x00\\x00\\x00\\x00"
    msg bad-version-raw-over-limit '\x21' "$u64$oid$oid$u64$(str hub)\\xff\\xff\\xff\\xff"
    msg valid-pull-end '\x22' "$u64$oid\\x01"
    msg valid-conflict '\x23' "$u64$u64$(str resource)$(str title)$(str overridden)$(str ottawa)$u64$u64\\x00\\x00\\x00\\x02r1\\x00\\x00\\x00\\x01T\\x00\\x00\\x00\\x00"
    msg bad-conflict-table-64 '\x23' "$u64$u64$(str "$(rep 64 t)")$(str c)$(str k)$(str w)$u64$u64"
    msg bad-conflict-b32-huge '\x23' "$u64$u64$(str t)$(str c)$(str k)$(str w)$u64$u64\\xff\\xff\\xff\\xff"
    msg valid-bye '\x30' ''
    msg valid-snapshot '\x40' ''
    msg valid-snap-head '\x41' "$u64$oid$u64\\x00\\x00\\x00\\x04"
    msg bad-snap-head-short '\x41' "$u64$oid$u64"
    msg valid-snap-data '\x42' "\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x0e$zcs"
    msg valid-snap-data-empty-z '\x42' '\x00\x00\x00\x00\x00\x00\x00\x00'
    msg bad-snap-data-raw-over-limit '\x42' "\\x00\\x00\\x00\\x01\\x02\\x10\\x00\\x01$zcs"
    msg valid-snap-end '\x43' "$u64$u64"
    msg bad-snap-end-long '\x43' "$u64$u64\\x00"
    msg valid-error '\x7f' "\\x00\\x02$(str 'hub refused: schema differs')"
    printf '\x7f\x00\x05\x00\x03a\nb' >"$P/odd-error-newline"
    msg bad-error-nul '\x7f' '\x00\x05\x00\x03a\x00b'
    msg bad-error-401 '\x7f' "\\x00\\x07$(str "$(rep 401 e)")"
    msg bad-unknown-type '\x55' "$u64"
    : >"$P/bad-empty"
}

# gittree seeds follow fuzz_gittree.c: a byte (low 3 bits: how many changes,
# bit 3: directories), two bytes per change (name index and removal bit; id
# byte), then the old tree body.
seeds_gittree() {
    local G=$HERE/corpus/gittree a20 b20
    mkdir -p "$G"
    a20=$(printf 'a%.0s' $(seq 20))
    b20=$(printf 'b%.0s' $(seq 20))
    printf '\x03\x00\x01\x03\x02\x0c\x03100644 a\0%s100644 b\0%s' "$a20" "$b20" >"$G/rows-three-changes"
    printf '\x0a\x01\x05\x06\x0740000 a\0%s40000 ab\0%s' "$a20" "$b20" >"$G/dirs-two-changes"
    printf '\x00100644 b\0%s100644 a\0%s' "$a20" "$a20" >"$G/out-of-order"
    printf '\x01\x00\x01100644 a\0aaaaaa' >"$G/cut-short"
    printf '\x00' >"$G/empty"
}

# packfile seeds follow fuzz_packfile.c: a mode byte (0 index, 1 entry
# header, 2 and 6 delta of rows and of trees, 3 delta applied), then for an
# index the pack's length (4 bytes) and the index of a real two-object pack
# made with git; for a delta a split byte and base and target; for an applied
# one the base's length, the base and the delta.
seeds_packfile() {
    local K=$HERE/corpus/packfile W idx len a20 b20
    mkdir -p "$K"
    W=$(mktemp -d)
    git init -q --bare "$W/r.git"
    printf 'one row\n' | git -C "$W/r.git" hash-object -w --stdin >"$W/ids"
    printf 'another row\n' | git -C "$W/r.git" hash-object -w --stdin >>"$W/ids"
    git -C "$W/r.git" pack-objects -q "$W/p" <"$W/ids" >/dev/null
    idx=$(ls "$W"/p-*.idx)
    len=$(stat -c %s "${idx%.idx}.pack")
    # shellcheck disable=SC2059
    { printf '\x00'; printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((len >> 24 & 255)) \
          $((len >> 16 & 255)) $((len >> 8 & 255)) $((len & 255)))"; cat "$idx"; } >"$K/index-two-blobs"
    head -c 600 "$K/index-two-blobs" >"$K/index-cut-short"
    rm -rf "$W"
    printf '\x01\x95\x0a\x91\x2e' >"$K/entry-ofs"
    printf '\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01' >"$K/entry-too-large"
    a20=$(printf 'a%.0s' $(seq 20))
    b20=$(printf 'b%.0s' $(seq 20))
    printf '\x06\x80100644 a\0%s100644 b\0%s100644 a\0%s100644 c\0%s' "$a20" "$b20" "$a20" "$b20" \
        >"$K/delta-trees"
    printf '\x02\x80title\tOld text\ntitle\tNew text\n' >"$K/delta-rows"
    printf '\x03\x04abcd\x04\x04\x91\x01\x03\x01z' >"$K/apply-copy-insert"
    printf '\x03\x04abcd\x04\x05\x91\x02\x03' >"$K/apply-past-base"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(frame zcodec bundle changeset_check proto gittree packfile)
for name in "${names[@]}"; do
    "seeds_$name"
done
