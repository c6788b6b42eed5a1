#!/usr/bin/env bash
# Two sites that push byte-identical changes from the same base are two pushes:
# the push id covers the site, so the second is merged, not taken for a retry.
. "$(dirname "$0")/lib.sh"
setup_hub_and_sites toronto ottawa
T=$(site_db toronto); O=$(site_db ottawa)
R=$(new_uuid)
ok_cmd "toronto adds a resource" sq "$T" "INSERT INTO resource(id, title) VALUES ('$R', 'z')"
site_sync toronto "toronto syncs"
site_sync ottawa "ottawa syncs"
ok_cmd "toronto edits z -> a" sq "$T" "UPDATE resource SET title='a' WHERE id='$R'"
sleep 0.05
ok_cmd "ottawa makes the same edit from the same base" sq "$O" "UPDATE resource SET title='a' WHERE id='$R'"
site_sync toronto "toronto pushes a"
sleep 0.05
ok_cmd "toronto edits a -> b, later than ottawa's edit" sq "$T" "UPDATE resource SET title='b' WHERE id='$R'"
site_sync toronto "toronto pushes b"
site_sync ottawa "ottawa pushes its identical, older edit"
is "$(hub_sql "SELECT title FROM resource WHERE id='$R'")" b "the later edit (toronto's b) stays at the hub"
is "$(hub_sql "SELECT count(*) FROM _empact_push WHERE site_id='ottawa'")" 1 \
    "ottawa's push was recorded as ottawa's, not answered as a repeat of toronto's"
is "$(hub_sql "SELECT count(*) FROM _empact_conflict WHERE loser_site='ottawa' AND kind='overridden'")" 1 \
    "ottawa's overridden edit is in the hub's conflict log"
is "$(sq "$O" "SELECT lost_value || ' < ' || kept_value FROM _empact_conflict")" '"a" < "b"' \
    "... and in ottawa's own conflict table"
is "$(sq "$O" "SELECT title FROM resource WHERE id='$R'")" b "ottawa converges to the hub"
done_testing
