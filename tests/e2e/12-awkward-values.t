#!/usr/bin/env bash
# 12-awkward-values.t - keys and values that are legal in SQLite but awkward as
# git paths or text: slashes, dots, newlines, empty and very long keys,
# non-ASCII, composite keys containing the separator, blobs in TEXT columns,
# NULL vs the string 'null', floats that need 17 digits.  They must sync
# exactly (sqldiff, typeof), and the git tree must still hold exactly one file
# per row under <table>/<ab>/<cd>/<name> with a clean `git fsck --strict`.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
LONG=$(printf 'k%.0s' $(seq 1 300))
BIG=$(printf 'lorem ipsum %.0s' $(seq 1 1000))

ok_cmd "toronto writes awkward keys and values with sqlite3" sq "$T" "
INSERT INTO resource(id, title) VALUES
  ('a/b', 'slash in the key'),
  ('..', 'dot-dot key'),
  ('.', 'dot key'),
  ('.git', 'dot-git key'),
  ('x' || char(10) || 'y', 'newline in the key'),
  ('ünïcödé-ключ-鍵', 'non-ASCII key'),
  ('with space', 'space in the key'),
  ('$LONG', '300-character key'),
  ('', 'empty key'),
  ('UPPER', 'case 1'),
  ('upper', 'case 2');
INSERT INTO resource(id, title, summary) VALUES
  ('inject', 'line one' || char(10) || 'title: forged' || char(10) || 'id: \"other\"', 'tab' || char(9) || 'quote\" backslash\\ end'),
  ('big', '$BIG', NULL),
  ('null-sql', 'NULL summary', NULL),
  ('null-str', 'NULL summary', 'null'),
  ('null-quoted', 'NULL summary', '\"null\"'),
  ('empty-str', 'NULL summary', '');
INSERT INTO resource(id, title) VALUES ('blob-title', X'00FF41'), ('int-title', 42);
INSERT INTO metric_value(site_id, metric, period, value) VALUES
  ('toronto', 'x,y', 'z', 1), ('toronto', 'x', 'y,z', 2),
  ('toronto', 'a/b', '2026-Q3', 3),
  ('toronto', 'float', '2026-Q3', 0.1 + 0.2),
  ('toronto', 'huge', '2026-Q3', 1e300),
  ('toronto', 'tiny', '2026-Q3', 5e-324),
  ('toronto', 'neg', '2026-Q3', -1.5);"
nres=$(sq "$T" "SELECT count(*) FROM resource")
is "$nres" 19 "19 awkward resources at toronto"

site_sync toronto "toronto pushes them"
site_sync ottawa "ottawa pulls them"
assert_converged toronto ottawa
is "$(hub_sql "SELECT count(*) FROM resource")" 19 "the hub holds 19 resources"
is "$(hub_sql "SELECT count(*) FROM metric_value")" 7 "the hub holds 7 metric values (keys with commas are distinct)"
for db in "$HUB_DIR/hub.db" "$(site_db ottawa)"; do
    w=$([ "$db" = "$HUB_DIR/hub.db" ] && echo hub || echo ottawa)
    is "$(sq "$db" "SELECT typeof(title) || ':' || hex(title) FROM resource WHERE id='blob-title'")" "blob:00FF41" \
        "$w: a BLOB in a TEXT column stays a BLOB, bytes intact"
    is "$(sq "$db" "SELECT typeof(title) FROM resource WHERE id='int-title'")" text "$w: 42 in a TEXT column is text"
    is "$(sq "$db" "SELECT value = 0.1 + 0.2 AND value <> 0.3 FROM metric_value WHERE metric='float'")" 1 \
        "$w: 0.1 + 0.2 keeps all 17 digits"
    is "$(sq "$db" "SELECT value = 5e-324 FROM metric_value WHERE metric='tiny'")" 1 "$w: the smallest subnormal survives"
    is "$(sq "$db" "SELECT count(*) FROM resource WHERE id = 'x' || char(10) || 'y'")" 1 "$w: the key with a newline"
    is "$(sq "$db" "SELECT length(id) FROM resource WHERE title = '300-character key'")" 300 "$w: the 300-character key"
    is "$(sq "$db" "SELECT count(*) FROM resource WHERE id = ''")" 1 "$w: the empty key"
    is "$(sq "$db" "SELECT quote(summary) FROM resource WHERE id LIKE 'null-%' OR id = 'empty-str' ORDER BY id")" \
        "$(printf "''\n'\"null\"'\nNULL\n'null'")" "$w: NULL, '', 'null' and '\"null\"' stay distinct"
done

# ---- the git tree -------------------------------------------------------------------------
ok_cmd "git fsck --strict is clean (no '.', '..', '.git' or slash-split names)" \
    git -C "$HUB_DIR/history.git" fsck --strict
tree=$(hub_git ls-tree -r -z --name-only HEAD 2>/dev/null | tr '\0\n' '\n?')
for t in $REPL_TABLES; do
    n=$(hub_sql "SELECT count(*) FROM $t")
    is "$(printf '%s\n' "$tree" | grep -c "^$t/")" "$n" "git tree: one file per $t row ($n)"
done
is "$(printf '%s\n' "$tree" | grep -Evc '^(resource|metric_value|metric|site)/[0-9a-f]{2}/[0-9a-f]{2}/[^/]+$')" 0 \
    "every path is <table>/<ab>/<cd>/<one name>"
g_all=$(hub_git cat-file --batch-all-objects --batch 2>/dev/null | tr -d '\000')
like "$g_all" '0\.30000000000000004' "git text form keeps 0.1 + 0.2 to 17 digits"
null_bodies=$(printf '%s\n' "$tree" | grep '^resource/' | while IFS= read -r f; do
    b=$(hub_git show "HEAD:$f" 2>/dev/null)
    case $b in *'NULL summary'*) printf '%s\n' "$b" | grep -v '^id:' | md5sum ;; esac
done | sort -u | wc -l)
is "$null_bodies" 4 "git bodies of NULL / '' / 'null' / '\"null\"' summaries are all different"

# `git clone` with the ordinary CLI must work, checkout included: every file
# name must be one the file system can create (at most 255 bytes on Linux).
ok_cmd "git clone of history.git, with a checkout, succeeds" git clone -q "$HUB_DIR/history.git" "$E2E_TMP/clone"
is "$(find "$E2E_TMP/clone" -path "$E2E_TMP/clone/.git" -prune -o -type f -print 2>/dev/null | wc -l)" \
    "$(printf '%s\n' "$tree" | grep -c .)" "the checkout holds one file per row"
is "$(printf '%s\n' "$tree" | awk -F/ 'length($NF) > 255' | wc -l)" 0 "no file name in the tree is longer than 255 bytes"

# ---- and they can change and go away again -----------------------------------------------
ok_cmd "toronto updates and deletes awkward rows" sq "$T" "
UPDATE resource SET title = 'slash, renamed' WHERE id = 'a/b';
DELETE FROM resource WHERE id IN ('..', '.', '.git', '', 'x' || char(10) || 'y');
UPDATE metric_value SET value = 10 WHERE metric = 'x,y';
DELETE FROM metric_value WHERE metric = 'x';"
site_sync toronto "toronto pushes the changes"
site_sync ottawa "ottawa pulls them"
assert_converged toronto ottawa
is "$(hub_sql "SELECT value FROM metric_value WHERE metric = 'x,y'")" 10.0 "the ('x,y','z') row was updated"
is "$(hub_sql "SELECT count(*) FROM metric_value WHERE metric = 'x'")" 0 "the ('x','y,z') row was deleted, alone"
tree=$(hub_git ls-tree -r -z --name-only HEAD 2>/dev/null | tr '\0\n' '\n?')
for t in resource metric_value; do
    n=$(hub_sql "SELECT count(*) FROM $t")
    is "$(printf '%s\n' "$tree" | grep -c "^$t/")" "$n" "after the changes: one file per $t row ($n)"
done
ok_cmd "git fsck --strict is clean" git -C "$HUB_DIR/history.git" fsck --strict

stop_hub
done_testing
