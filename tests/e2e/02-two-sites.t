#!/usr/bin/env bash
# 02-two-sites.t - a hub and two sites (toronto, ottawa) edit offline with the
# plain sqlite3 shell (inserts, updates, deletes), sync, and converge; the git
# history holds one commit per push that changed something, authored by the
# pushing site, with one file per row.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
is "$(hub_max_seq)" 3 "after two add-sites and two joins the hub is at version 3 (joins push nothing)"
is "$(hub_git log --format=%an HEAD 2>&1 | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')" "hub=3" \
    "three commits so far, all authored by hub"
# toronto joined before ottawa was added: it learns about ottawa at its next sync.
is "$(site_sql toronto "SELECT group_concat(site_id, ',') FROM (SELECT site_id FROM site ORDER BY site_id)")" \
    "toronto" "toronto, joined first, sees itself in the site registry"
is "$(site_sql ottawa "SELECT group_concat(site_id, ',') FROM (SELECT site_id FROM site ORDER BY site_id)")" \
    "ottawa,toronto" "ottawa, joined second, sees both sites in the site registry"
for id in toronto ottawa; do
    is "$(site_sql "$id" "SELECT count(*) FROM metric")" "$(hub_sql "SELECT count(*) FROM metric")" \
        "$id holds the metric catalogue"
done

M1=$(hub_sql "SELECT code FROM metric ORDER BY code LIMIT 1")
M2=$(hub_sql "SELECT code FROM metric ORDER BY code LIMIT 1 OFFSET 1")
[ -n "$M1" ] && [ -n "$M2" ]; ok $? "the catalogue has at least two metrics ($M1, $M2)"

U=$RANDOM$$
T1=$(new_uuid) T2=$(new_uuid) T3=$(new_uuid) T4=$(new_uuid)
O1=$(new_uuid) O2=$(new_uuid) O3=$(new_uuid) O4=$(new_uuid)

# ---- round 1: inserts, offline ------------------------------------------------------
ok_cmd "toronto inserts 4 resources and 2 metric values with sqlite3" sq "$(site_db toronto)" "
INSERT INTO resource(id, title, url, kind, phm_component, oht_block, population_group, added_by_site)
VALUES ('$T1', 'Toronto equity toolkit $U', 'https://example.org/t1', 'toolkit', 'population identification', 1, 'older adults', 'toronto'),
       ('$T2', 'Toronto HEA guide $U', NULL, 'guide', 'implementation and reach', 4, NULL, 'toronto'),
       ('$T3', 'Toronto co-design video $U', NULL, 'video', 'co-designing care models and service mix', 2, 'palliative approach', 'toronto');
INSERT INTO resource(id, title, language) VALUES ('$T4', 'Toronto rapport francophone $U', 'fr');
INSERT INTO metric_value(site_id, metric, period, value) VALUES ('toronto', '$M1', '2026-Q3', 22), ('toronto', '$M2', '2026-Q3', 6);"
ok_cmd "ottawa inserts 3 resources and 2 metric values with sqlite3" sq "$(site_db ottawa)" "
INSERT INTO resource(id, title, kind, phm_component, oht_block, population_group, added_by_site)
VALUES ('$O1', 'Ottawa segmentation report $U', 'report', 'segmentation for needs, risks and barriers', 3, 'people with chronic conditions', 'ottawa'),
       ('$O2', 'Ottawa evaluation framework $U', 'guide', 'monitoring and evaluation', 8, 'mental health and addictions', 'ottawa'),
       ('$O3', 'Ottawa short-lived note $U', 'note', NULL, NULL, NULL, 'ottawa');
INSERT INTO metric_value(site_id, metric, period, value, suppressed) VALUES ('ottawa', '$M1', '2026-Q3', 3, 0), ('ottawa', '$M2', '2026-Q3', NULL, 1);"

is "$(status_get toronto 'pending changes')" 6 "toronto status: 6 pending changes before sync"
is "$(status_get ottawa 'pending changes')" 5 "ottawa status: 5 pending changes before sync"

site_sync toronto "toronto pushes round 1"
is "$(printf '%s\n' "$RUN_OUT" | grep -c .)" 1 "empact sync prints a one-line summary"
site_sync ottawa "ottawa pushes round 1"
is "$(hub_max_seq)" 5 "two pushes that changed something made versions 4 and 5"
site_sync toronto "toronto pulls ottawa's round 1"
is "$(hub_max_seq)" 5 "a sync with nothing to push makes no version"

# ---- round 2: updates and deletes, offline -------------------------------------------
ok_cmd "toronto updates, deletes (own and ottawa's shared rows, own metric values)" sq "$(site_db toronto)" "
UPDATE resource SET title = 'Toronto equity toolkit v2 $U', updated_at = '2026-07-01' WHERE id = '$T1';
DELETE FROM resource WHERE id = '$T2';
UPDATE resource SET summary = 'Reviewed by Toronto $U' WHERE id = '$O1';
UPDATE metric_value SET value = 23 WHERE site_id = 'toronto' AND metric = '$M1' AND period = '2026-Q3';
DELETE FROM metric_value WHERE site_id = 'toronto' AND metric = '$M2' AND period = '2026-Q3';"
ok_cmd "ottawa updates, deletes and inserts" sq "$(site_db ottawa)" "
UPDATE resource SET title = 'Ottawa evaluation framework 2e $U' WHERE id = '$O2';
DELETE FROM resource WHERE id = '$O3';
INSERT INTO resource(id, title, kind) VALUES ('$O4', 'Ottawa palliative approach primer $U', 'guide');
UPDATE metric_value SET value = 4 WHERE site_id = 'ottawa' AND metric = '$M1' AND period = '2026-Q3';"
is "$(status_get toronto 'pending changes')" 5 "toronto status: 5 pending changes"
is "$(status_get ottawa 'pending changes')" 4 "ottawa status: 4 pending changes"

site_sync toronto "toronto pushes round 2"
site_sync ottawa "ottawa pushes round 2"
is "$(hub_max_seq)" 7 "round 2 made versions 6 and 7"
site_sync toronto "toronto syncs again"
site_sync ottawa "ottawa syncs again"
site_sync toronto "toronto syncs a third time"
site_sync ottawa "ottawa syncs a third time"
is "$(hub_max_seq)" 7 "syncs with nothing to push made no version"

# ---- convergence ---------------------------------------------------------------------------
assert_converged toronto ottawa
for id in toronto ottawa; do
    is "$(site_sql "$id" "SELECT title FROM resource WHERE id='$T1'")" "Toronto equity toolkit v2 $U" "$id has toronto's updated title"
    is "$(site_sql "$id" "SELECT title FROM resource WHERE id='$O2'")" "Ottawa evaluation framework 2e $U" "$id has ottawa's updated title"
    is "$(site_sql "$id" "SELECT title FROM resource WHERE id='$O4'")" "Ottawa palliative approach primer $U" "$id has ottawa's new resource"
    is "$(site_sql "$id" "SELECT summary FROM resource WHERE id='$O1'")" "Reviewed by Toronto $U" "$id has toronto's edit of ottawa's resource"
    is "$(site_sql "$id" "SELECT count(*) FROM resource WHERE id IN ('$T2', '$O3')")" 0 "$id: deleted resources are gone"
    is "$(site_sql "$id" "SELECT count(*) FROM metric_value WHERE period='2026-Q3'")" 3 "$id holds 3 metric values for 2026-Q3"
    is "$(site_sql "$id" "SELECT value FROM metric_value WHERE site_id='ottawa' AND metric='$M1'")" 4.0 "$id has ottawa's updated metric value"
    is "$(site_sql "$id" "SELECT suppressed || '|' || ifnull(value,'NULL') FROM metric_value WHERE site_id='ottawa' AND metric='$M2'")" \
        "1|NULL" "$id has ottawa's suppressed value as NULL"
done
is "$(hub_sql "SELECT count(*) FROM resource")" 6 "the hub holds 6 resources"

maxseq=$(hub_max_seq)
for id in toronto ottawa; do
    is "$(site_sql "$id" "SELECT group_concat(site_id, ',') FROM (SELECT site_id FROM site ORDER BY site_id)")" \
        "ottawa,toronto" "$id sees both sites in the site registry"
    is "$(status_get "$id" 'pending changes')" 0 "$id status: pending changes 0"
    is "$(status_get "$id" 'synced version')" "$maxseq" "$id status: synced version = hub max(seq) = $maxseq"
    is "$(status_get "$id" site)" "$id" "$id status: site"
    is "$(status_get "$id" hub)" "127.0.0.1:$HUB_PORT" "$id status: hub address"
    like "$(status_get "$id" 'last sync')" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|\+00:?00)$' \
        "$id status: last sync is an ISO-8601 UTC time"
    is "$(status_json "$id" site)|$(status_json "$id" synced_version)|$(status_json "$id" pending_changes)|$(status_json "$id" hub)" \
        "$id|$maxseq|0|127.0.0.1:$HUB_PORT" "$id status --json: site, synced_version, pending_changes, hub"
    like "$(status_json "$id" last_sync)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$id status --json: last_sync"
    ok_cmd "$id replica integrity_check" sq "$(site_db "$id")" "PRAGMA integrity_check"
    is "$RUN_OUT" ok "$id replica integrity_check says ok"
    is "$(site_sql "$id" 'PRAGMA journal_mode')" wal "$id replica is in WAL mode"
done

# ---- the git history --------------------------------------------------------------------------
G="$HUB_DIR/history.git"
is "$(hub_git rev-list --count HEAD 2>&1)" "$maxseq" "one commit per version ($maxseq)"
is "$(hub_sql "SELECT count(*) FROM _empact_version")" "$maxseq" "_empact_version has one row per version"
is "$(hub_git rev-list --reverse HEAD 2>&1 | paste -sd' ')" \
    "$(hub_sql "SELECT commit_id FROM _empact_version ORDER BY seq" | paste -sd' ')" \
    "the commits are the versions' commit_ids, in order"
is "$(hub_git rev-parse 'HEAD^{tree}' 2>&1)" "$(hub_sql "SELECT tree_id FROM _empact_version WHERE seq=$maxseq")" \
    "the last version's tree_id is HEAD's tree"
is "$(hub_git log --format=%an HEAD 2>&1 | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')" \
    "hub=3 ottawa=2 toronto=2" "commits per author: hub 3, toronto 2, ottawa 2 (pushes that changed something)"
is "$(hub_git log --reverse --format=%an HEAD 2>&1 | paste -sd' ')" \
    "$(hub_sql "SELECT CASE WHEN site_id IS NULL OR site_id='' THEN 'hub' ELSE site_id END FROM _empact_version ORDER BY seq" | paste -sd' ')" \
    "each commit's author is its version's site"
is "$(hub_git log --format='%an %ae' HEAD 2>&1 | grep -v '^hub ' | sort -u | paste -sd',')" \
    "ottawa ottawa@sites.empact,toronto toronto@sites.empact" "site commits use <site_id>@sites.empact"
is "$(hub_git rev-list --merges HEAD 2>&1 | wc -l)" 0 "history is linear"
ok_cmd "git fsck --strict is clean" git -C "$G" fsck --strict
log_p=$(hub_git log -p HEAD 2>&1)
like "$log_p" "Toronto equity toolkit v2 $U" "git log -p shows toronto's resource title"
is "$(printf "%s\n" "$log_p" | grep -c "^-.*Ottawa short-lived note $U")" 1 "git log -p shows the deleted resource's title as removed"

tree=$(hub_git ls-tree -r --name-only HEAD 2>&1)
total=0
for t in $REPL_TABLES; do
    n=$(hub_sql "SELECT count(*) FROM $t")
    total=$((total + n))
    is "$(printf '%s\n' "$tree" | grep -c "^$t/")" "$n" "git tree: one file per $t row ($n)"
done
is "$(printf '%s\n' "$tree" | grep -c .)" "$total" "git tree: exactly one file per replicated row ($total), nothing else"
is "$(printf '%s\n' "$tree" | grep -Evc '^(resource|metric_value|metric|site)/[0-9a-f]{2}/[0-9a-f]{2}/[^/]+$')" 0 \
    "every path is <table>/<ab>/<cd>/<key> (two hex shard levels)"
path=$(hub_git grep -l "Toronto equity toolkit v2 $U" HEAD 2>/dev/null | head -n 1)
path=${path#HEAD:}
like "$path" '^resource/[0-9a-f]{2}/[0-9a-f]{2}/' "the row holding toronto's title is under resource/"
is "$(hub_git show "HEAD:$path" 2>&1 | grep -cE "^title: \"?Toronto equity toolkit v2 $U\"?$")" 1 \
    "its body has a 'title: ...' line"

# ---- a replica of the previous layout (format 2, no insert marks) is upgraded in place ----
O=$(site_db ottawa)
ok_cmd "ottawa's replica is turned back into format 2" sq "$O" "
  DROP TABLE _empact_insert_resource; DROP TABLE _empact_insert_metric_value;
  UPDATE _empact_meta SET value = '2' WHERE key = 'format'"
site_sync ottawa "a format 2 replica syncs"
is "$(sq "$O" "SELECT value FROM _empact_meta WHERE key = 'format';
               SELECT count(*) FROM sqlite_schema WHERE name LIKE '\_empact\_insert\_%' ESCAPE '\\'")" \
    "3"$'\n'"2" "... and is format 3 afterwards, with its insert-mark tables"
is "$(sq "$O" "PRAGMA integrity_check")" ok "... integrity_check ok"

stop_hub
done_testing
