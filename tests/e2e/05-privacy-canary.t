#!/usr/bin/env bash
# 05-privacy-canary.t - a canary string written into every TEXT column of every
# local (confidential) table appears nowhere on the hub: not in hub.db (or its
# -wal/-shm), not in any git object or revision, not in the hub log, not in any
# file under HUBDIR, and not on the decrypted wire (test builds: every frame's
# plaintext, decompressed changesets included, is logged to EMPACT_FRAME_LOG by
# the hub and the site).  A positive-control string in a shared resource DOES
# reach the hub, git and the wire, so the same checks can fail.
. "$(dirname "$0")/lib.sh"

# Read by test builds only (common/testpoint.h); the hub inherits it from start_hub.
FRAME_LOG="$E2E_TMP/frames.log"
export EMPACT_FRAME_LOG="$FRAME_LOG"
setup_hub_and_sites toronto

CANARY="CANARY-$RANDOM-$$-secret"
CONTROL="PUBLICCONTROL-$RANDOM-$$-shared"
DB=$(site_db toronto)

# ---- the canary in every TEXT column of every local table --------------------------
# Builds one INSERT per row from PRAGMA table_info: TEXT columns get the canary
# (tagged with table and column), INTEGER ids get the row number, references 1.
canary_insert() {
    local t=$1 row=$2 name type cols="" vals="" v
    while IFS='|' read -r name type; do
        [ -n "$name" ] || continue
        case "$(printf '%s' "$type" | tr a-z A-Z)" in
        *TEXT* | *CHAR* | *CLOB* | "")
            case $t.$name in   # CHECK (... IN (...)) columns: the canary cannot go there
            impact_partner.level) v="'hospital'" ;;
            hea.step | hea_step.step) v="'intake'" ;;
            *) v="'$CANARY-$t-$name-$row'" ;;
            esac ;;
        *INT*)
            case $name in
            id) v=$row ;;
            *_id) v=$row ;;
            *) v=$((1000 * row + 7)) ;;
            esac ;;
        *) v=1.5 ;;
        esac
        cols="$cols${cols:+, }$name"
        vals="$vals${vals:+, }$v"
    done < <(sq "$DB" "SELECT name, type FROM pragma_table_info('$t')")
    printf 'INSERT INTO %s(%s) VALUES (%s);\n' "$t" "$cols" "$vals"
}

sql=""
for t in $LOCAL_TABLES; do
    ncol=$(sq "$DB" "SELECT count(*) FROM pragma_table_info('$t')")
    ntext=$(sq "$DB" "SELECT count(*) FROM pragma_table_info('$t') WHERE upper(type) LIKE '%TEXT%'")
    [ "${ncol:-0}" -gt 0 ] 2>/dev/null; ok $? "local table $t exists at the site ($ncol columns, $ntext TEXT)"
    for row in 1 2 3; do sql="$sql$(canary_insert "$t" "$row")"$'\n'; done
done
ok_cmd "the canary goes into every TEXT column of every local table (3 rows each)" sq "$DB" "$sql"
# Edits to local rows must not leak either.
ok_cmd "local rows are updated and deleted too" sq "$DB" "
UPDATE member SET notes = '$CANARY-updated' WHERE id = 1;
UPDATE hea SET step = 'report', notes = '$CANARY-report-notes' WHERE id = 2;
DELETE FROM compensation WHERE id = 3;"
for t in $LOCAL_TABLES; do
    n=$(sq "$DB" "SELECT count(*) FROM $t")
    is "$n" "$([ "$t" = compensation ] && echo 2 || echo 3)" "$t holds its canary rows at the site"
done

ok_cmd "a shared resource carries the positive-control string" sq "$DB" "
INSERT INTO resource(id, title, summary) VALUES ('$(new_uuid)', '$CONTROL title', 'control summary');"
is "$(status_get toronto 'pending changes')" 1 "only the shared row is pending (local tables are not replicated)"

site_sync toronto "first sync"
site_sync toronto "second sync"
is "$(status_get toronto 'pending changes')" 0 "nothing pending"

# ---- the decrypted wire ----------------------------------------------------------------
if [ -s "$FRAME_LOG" ]; then
    n=$(grep -a -c -F "$CONTROL" "$FRAME_LOG")
    [ "$n" -gt 0 ]; ok $? "control: the shared string is in the frame log ($n records)"
    # "PID send|recv|zstd-in|zstd-out ..." record headers: both sides logged.
    pids=$(grep -a -E '^[0-9]+ (send|recv|zstd-in|zstd-out) ' "$FRAME_LOG" | cut -d' ' -f1 | sort -u | wc -l)
    [ "$pids" -ge 2 ]; ok $? "the frame log holds frames of the hub and of the site ($pids processes)"
    grep -a -q -E '^[0-9]+ recv type=0x10 ' "$FRAME_LOG"; ok $? "... including a PUSH the hub received"
    grep -a -q -E '^[0-9]+ zstd-out ' "$FRAME_LOG"; ok $? "... and decompressed changesets"
    is "$(grep -a -c -F "$CANARY" "$FRAME_LOG")" 0 "canary absent from every frame on the wire (decrypted, decompressed)"
else
    skip "wire: no frame log (a release build ignores EMPACT_FRAME_LOG)"
    skip "wire: canary check needs a HOOKS=1 build"
fi

# ---- positive controls: the checks below can see what reaches the hub -------------------
H=$HUB_DIR
hubdb_bytes() { cat "$H/hub.db" "$H/hub.db-wal" "$H/hub.db-shm" 2>/dev/null; }
git_objects() { git -C "$H/history.git" cat-file --batch-all-objects --batch 2>/dev/null; }
git_grep_all() { git -C "$H/history.git" grep -a -F "$1" $(git -C "$H/history.git" rev-list --all) -- 2>/dev/null; }

n=$(hubdb_bytes | grep -a -c -F "$CONTROL")
[ "$n" -gt 0 ]; ok $? "control: the shared string is in hub.db (+wal) raw bytes ($n)"
n=$(git_objects | grep -a -c -F "$CONTROL")
[ "$n" -gt 0 ]; ok $? "control: the shared string is in the git objects ($n)"
n=$(git_grep_all "$CONTROL" | wc -l)
[ "$n" -gt 0 ]; ok $? "control: git grep over all revisions finds the shared string ($n)"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title = '$CONTROL title'")" 1 "control: the shared row is on the hub"

# ---- the canary is nowhere on the hub ---------------------------------------------------
ls "$H"/hub.db* >/dev/null 2>&1; ok $? "hub.db files exist: $(cd "$H" && ls hub.db* | paste -sd' ')"
is "$(hubdb_bytes | grep -a -c -F "$CANARY")" 0 "canary absent from hub.db, hub.db-wal, hub.db-shm raw bytes"
is "$(git_objects | grep -a -c -F "$CANARY")" 0 "canary absent from every git object (cat-file --batch-all-objects)"
is "$(git_grep_all "$CANARY" | wc -l)" 0 "canary absent from git grep over all revisions"
is "$(grep -a -c -F "$CANARY" "$H/hub.log")" 0 "canary absent from the hub log"
is "$(grep -r -a -l -F "$CANARY" "$H" | paste -sd' ')" "" "canary absent from every file under HUBDIR"
is "$(git -C "$H/history.git" log --all --format='%H %an %ae %s %b' | grep -c -F "$CANARY")" 0 \
    "canary absent from commit metadata"
for t in $LOCAL_TABLES; do
    is "$(hub_sql "SELECT count(*) FROM sqlite_master WHERE name = '$t'" 2>/dev/null || echo 0)" 0 \
        "hub.db has no local table $t"
done
is "$(hub_git ls-tree -r --name-only HEAD 2>&1 | grep -Ec "^($(echo $LOCAL_TABLES | tr ' ' '|'))/")" 0 \
    "the git tree has no local table"

# ---- and still at the site -------------------------------------------------------------
is "$(sq "$DB" "SELECT count(*) FROM member WHERE notes = '$CANARY-updated'")" 1 "the site keeps its confidential rows"
assert_converged toronto

stop_hub
# After a clean stop (checkpoint, WAL merged) the canary is still absent.
is "$(hubdb_bytes | grep -a -c -F "$CANARY")" 0 "canary absent from hub.db after the hub stopped"
is "$(grep -a -c -F "$CANARY" "$H/hub.log")" 0 "canary absent from the full hub log"
[ ! -s "$FRAME_LOG" ] || is "$(grep -a -c -F "$CANARY" "$FRAME_LOG")" 0 "canary absent from the whole frame log"
done_testing
