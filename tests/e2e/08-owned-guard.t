#!/usr/bin/env bash
# 08-owned-guard.t - the class guards.  At a site, triggers refuse (sqlite3 exits
# non-zero) any write to another site's metric_value rows and any write to the
# hub-class tables metric and site; nothing of it reaches the hub.  If the
# refusing triggers are dropped by hand, the hub still refuses the rows.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
O=$(site_db ottawa)
M=$(hub_sql "SELECT code FROM metric ORDER BY code LIMIT 1")

ok_cmd "ottawa writes its own metric value" sq "$O" \
    "INSERT INTO metric_value(site_id, metric, period, value) VALUES ('ottawa', '$M', '2026-Q3', 11)"
site_sync ottawa "ottawa pushes it"
site_sync toronto "toronto pulls it"
is "$(sq "$T" "SELECT value FROM metric_value WHERE site_id='ottawa'")" 11.0 "toronto holds ottawa's row"
v0=$(hub_max_seq)
hub_mv() { hub_sql "SELECT count(*) || '|' || ifnull(sum(value),'') FROM metric_value WHERE site_id='ottawa' OR period='2099-Q1'"; }
hub_before=$(hub_mv)
metric_before=$(hub_sql "SELECT * FROM metric ORDER BY code")
site_before=$(hub_sql "SELECT * FROM site ORDER BY site_id")

# ---- owned: another site's rows ----------------------------------------------------------
expect_fail "toronto inserting a metric_value for ottawa is refused by a trigger" \
    sq "$T" "INSERT INTO metric_value(site_id, metric, period, value) VALUES ('ottawa', '$M', '2099-Q1', 99)"
like "$RUN_ERR" '.' "... with a message: $(printf '%s' "$RUN_ERR" | head -n 1)"
is "$(sq "$T" "SELECT count(*) FROM metric_value WHERE period='2099-Q1'")" 0 "... and the row is not there"
expect_fail "toronto updating ottawa's metric_value is refused" \
    sq "$T" "UPDATE metric_value SET value = 12 WHERE site_id = 'ottawa'"
expect_fail "toronto deleting ottawa's metric_value is refused" \
    sq "$T" "DELETE FROM metric_value WHERE site_id = 'ottawa'"
ok_cmd "toronto writes its own metric value" sq "$T" \
    "INSERT INTO metric_value(site_id, metric, period, value) VALUES ('toronto', '$M', '2026-Q3', 7)"
expect_fail "toronto re-labelling its own row as ottawa's is refused" \
    sq "$T" "UPDATE metric_value SET site_id = 'ottawa' WHERE site_id = 'toronto'"
is "$(sq "$T" "SELECT site_id || '|' || value FROM metric_value ORDER BY site_id" | paste -sd' ')" \
    "ottawa|11.0 toronto|7.0" "toronto's replica holds exactly ottawa's original row and its own"

# ---- hub class: metric and site -------------------------------------------------------------
expect_fail "toronto inserting into metric is refused" \
    sq "$T" "INSERT INTO metric(code, name, unit) VALUES ('bogus_$$', 'Bogus', 'count')"
expect_fail "toronto updating metric is refused" sq "$T" "UPDATE metric SET name = 'Renamed' WHERE code = '$M'"
expect_fail "toronto deleting from metric is refused" sq "$T" "DELETE FROM metric"
expect_fail "toronto inserting into site is refused" \
    sq "$T" "INSERT INTO site(site_id, name) VALUES ('rogue', 'Rogue site')"
expect_fail "toronto updating site is refused" sq "$T" "UPDATE site SET name = 'Hijacked' WHERE site_id = 'ottawa'"
is "$(sq "$T" "SELECT * FROM metric ORDER BY code")" "$metric_before" "toronto's metric table is unchanged"
is "$(sq "$T" "SELECT * FROM site ORDER BY site_id")" "$site_before" "toronto's site table is unchanged"

is "$(status_get toronto 'pending changes')" 1 "only toronto's own row is pending"
site_sync toronto "toronto syncs"
is "$(hub_mv)" "$hub_before" "nothing of the refused writes reached the hub"
is "$(hub_sql "SELECT * FROM metric ORDER BY code")" "$metric_before" "the hub's metric table is unchanged"
is "$(hub_sql "SELECT * FROM site ORDER BY site_id")" "$site_before" "the hub's site table is unchanged"
is "$(hub_sql "SELECT value FROM metric_value WHERE site_id='toronto'")" 7.0 "toronto's own row reached the hub"
site_sync ottawa "ottawa pulls toronto's row"
assert_converged toronto ottawa

# ---- the hub's own guard: drop the refusing triggers and try again --------------------
# The refusing triggers are the ones on these tables whose SQL calls RAISE();
# the dirty-key triggers are expected not to.
guards=$(sq "$T" "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name IN ('metric_value','metric') AND sql LIKE '%RAISE%'")
if [ -z "$guards" ]; then
    skip "no RAISE() triggers found on metric_value/metric: cannot bypass the local guard"
else
    diag "dropping local guard triggers: $(printf '%s' "$guards" | paste -sd' ')"
    drop=""
    for g in $guards; do drop="$drop DROP TRIGGER \"$g\";"; done
    ok_cmd "drop the local guard triggers with sqlite3" sq "$T" "$drop"
    ok_cmd "with the guards gone, write a row for ottawa and rename a metric" sq "$T" "
INSERT INTO metric_value(site_id, metric, period, value) VALUES ('ottawa', '$M', '2099-Q1', 99);
UPDATE metric SET name = 'Renamed by toronto' WHERE code = '$M';"
    pend=$(status_get toronto 'pending changes')
    diag "pending changes recorded for the forged rows: $pend"
    log0=$(hub_log_lines)
    run "$EMPACT" sync "$T"
    diag "sync of forged rows: exit $RUN_RC; stdout: $RUN_OUT; stderr: $RUN_ERR"
    like "$RUN_RC" '^(0|77)$' "the sync ends as accepted-with-drops (0) or refused (77), not a crash"
    is "$(hub_mv)" "$hub_before" "the hub refused the row with another site's site_id"
    is "$(hub_sql "SELECT * FROM metric ORDER BY code")" "$metric_before" "the hub refused the change to metric"
    sleep 0.3
    if [ "${pend:-0}" != 0 ]; then
        like "$(hub_log_since "$log0")" '[Rr]efus|[Rr]eject|[Dd]enied|[Nn]ot allowed|[Oo]wned|[Ff]orbidden|[Pp]ermission' \
            "the hub log records the refusal"
    else
        skip "the forged rows were not recorded as pending, so the hub never saw them"
    fi
    is "$(hub_git rev-list --count HEAD 2>&1)" "$(hub_max_seq)" "still one commit per version"
    ok_cmd "git fsck --strict is clean" git -C "$HUB_DIR/history.git" fsck --strict
fi
[ "$(hub_max_seq)" -ge "$v0" ]; ok $? "the hub is at version $(hub_max_seq)"

stop_hub
done_testing
