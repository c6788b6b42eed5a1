#!/usr/bin/env bash
# 24-library.t - the shared resource library at a site: add, edit, list with
# filters, full-text search (accents, prefixes, words in any order), CSV
# export and import (quoting, BOM, CRLF, a per-row error report with line and
# column, nothing half-imported), and search at a second site over rows that
# arrived by sync.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
O=$(site_db ottawa)
must() { run "$EMPACT" "$@"; [ "$RUN_RC" = 0 ] || { fail "empact $*"; _diag_run_output; }; }
uuid_re='[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'

# ---- add, edit, list ------------------------------------------------------------------------
must resource add "$T" --title "Équité en santé : guide d'analyse" --summary "Un guide pour l'analyse d'équité" \
    --language fr --component "population identification" --block 1 --group "older adults" --kind guide
like "$RUN_OUT" "^resource $uuid_re: Équité en santé" "resource add prints a new random UUID"
R1=$(printf '%s' "$RUN_OUT" | sed -n 's/^resource \([^:]*\):.*/\1/p')
must resource add "$T" --title "Chronic conditions toolkit" --summary "Mapping barriers to care" \
    --component "segmentation for needs, risks and barriers" --block 2 --group "people with chronic conditions"
must resource add "$T" --title "Palliative approach video" --block 5 --group "palliative approach" --url https://example.org/v
R3=$(printf '%s' "$RUN_OUT" | sed -n 's/^resource \([^:]*\):.*/\1/p')
is "$(sq "$T" "SELECT language || '|' || added_by_site || '|' || (updated_at = date('now', 'localtime')) FROM resource WHERE id = '$R3'")" \
    "en|toronto|1" "defaults: language en, added_by_site the site, updated_at today"
for bad in "--block 9" "--block x" "--component nowhere" "--group teenagers" "--url ftp://x" "--language English"; do
    # shellcheck disable=SC2086
    run "$EMPACT" resource add "$T" --title "bad one" $bad
    is "$RUN_RC" 65 "resource add $bad is refused"
done
like "$RUN_ERR" "--language 'English' is not a language code" "... naming the option and the value"
is "$(sq "$T" "SELECT count(*) FROM resource WHERE title = 'bad one'")" 0 "... and nothing was added"
run "$EMPACT" resource add "$T" --summary "no title"
is "$RUN_RC" 64 "resource add without --title is a usage error"

must resource edit "$T" "$R3" --url "" --summary "Advance care planning conversations"
is "$RUN_OUT" "resource $R3: 2 fields changed" "resource edit changes the given fields"
is "$(sq "$T" "SELECT ifnull(url, 'NULL') || '|' || summary FROM resource WHERE id = '$R3'")" \
    "NULL|Advance care planning conversations" "... '' clears the url"
run "$EMPACT" resource edit "$T" 00000000-0000-4000-8000-000000000000 --title x
is "$RUN_RC:$RUN_ERR" "65:empact: there is no resource 00000000-0000-4000-8000-000000000000 in this replica" \
    "editing an unknown resource is refused"
run "$EMPACT" resource edit "$T" "$R3"
is "$RUN_RC" 64 "resource edit with nothing to change is a usage error"

must resource list "$T" --block 2
like "$RUN_OUT" "Chronic conditions toolkit" "list --block 2 lists the block-2 resource"
unlike "$RUN_OUT" "Palliative" "... and nothing else"
must resource list "$T" --group "palliative approach" --json
is "$(printf '%s' "$RUN_OUT" | json_eval 'map { $_->{title} } @$j')" "Palliative approach video" "list --group --json"
run "$EMPACT" resource list "$T" --component "not a component"
is "$RUN_RC" 65 "an unknown component filter is refused"

# ---- search ----------------------------------------------------------------------------------
must resource search "$T" equite
like "$RUN_OUT" "Équité en santé" "search ignores accents and case (equite finds Équité)"
must resource search "$T" barriers chronic
like "$RUN_OUT" "Chronic conditions toolkit" "search: every word, in any order, title or summary"
must resource search "$T" "plan*"
like "$RUN_OUT" "Palliative approach video" "search: a trailing * matches word beginnings (planning)"
must resource search "$T" toolkit --block 5
is "$RUN_OUT" "no resource matches" "search with a filter that excludes the match"
must resource search "$T" 'AND' '"' 'NEAR(' 'x:y'
is "$RUN_RC" 0 "words that look like FTS5 syntax are searched as words, not parsed"
run "$EMPACT" resource search "$T"
is "$RUN_RC" 64 "search without words is a usage error"
sq "$T" "INSERT INTO resource (id, title, summary) VALUES ('$(new_uuid)', 'Typed in the sqlite3 shell', 'zebra crossing')"
must resource search "$T" zebra
like "$RUN_OUT" "Typed in the sqlite3 shell" "a resource written with the sqlite3 shell is searchable too"

# ---- export, import ----------------------------------------------------------------------------
must resource export "$T" -o "$E2E_TMP/lib.csv"
is "$(head -n 1 "$E2E_TMP/lib.csv")" "id,title,url,summary,kind,language,phm_component,oht_block,population_group,added_by_site,updated_at" \
    "export writes the header"
is "$(($(wc -l <"$E2E_TMP/lib.csv") - 1))" "$(sq "$T" 'SELECT count(*) FROM resource')" "... and one line per resource"
grep -q '"Équité en santé : guide d'"'"'analyse"' "$E2E_TMP/lib.csv"; ok $? "... values quoted (RFC 4180)"

printf '\xef\xbb\xbftitle,summary,oht_block,population_group\r\n"Quoted, with a comma","He said ""hi""\nover two lines",3,older adults\r\nPlain title,,,\r\n\r\n' >"$E2E_TMP/good.csv"
must resource import "$T" "$E2E_TMP/good.csv"
is "$RUN_OUT" "imported 2 resources from $E2E_TMP/good.csv: 2 new, 0 updated" "import: a BOM, CRLF, quotes, a comma and a line break inside a value"
is "$(sq "$T" "SELECT summary FROM resource WHERE title = 'Quoted, with a comma'")" 'He said "hi"
over two lines' "... the value comes in exactly"

sed -i "s/Chronic conditions toolkit/Chronic conditions toolkit, 2nd edition/" "$E2E_TMP/lib.csv"
must resource import "$T" "$E2E_TMP/lib.csv"
like "$RUN_OUT" "imported [0-9]+ resources from .*: 0 new, [0-9]+ updated" "importing the export again updates (by id), adds nothing"
is "$(sq "$T" "SELECT count(*) FROM resource WHERE title = 'Chronic conditions toolkit, 2nd edition'")" 1 "... with the edited title"

before=$(sq "$T" "SELECT count(*) || ':' || total(length(title)) FROM resource")
cat >"$E2E_TMP/bad.csv" <<'CSV'
title,oht_block,population_group,url
Good row,1,older adults,https://example.org/a
Bad block,12,older adults,
"A title
on two lines",2,teenagers,
,3,,
Bad url,4,,example.org
Too,many,fields,here,really
CSV
run "$EMPACT" resource import "$T" "$E2E_TMP/bad.csv"
is "$RUN_RC" 65 "an import with bad rows fails (exit 65)"
like "$RUN_ERR" "line 3, column oht_block: '12' is not an OHT building block" "... line 3: the block, named by line and column"
like "$RUN_ERR" "line 4, column population_group: 'teenagers' is not one of the population groups" \
    "... line 4: a record that starts on line 4 (its title spans two lines)"
like "$RUN_ERR" "line 6, column title: '' is empty: every resource needs a title" "... line 6: the missing title"
like "$RUN_ERR" "line 7, column url: 'example.org' is not a web address" "... line 7: the url"
like "$RUN_ERR" "line 8: 5 fields, but the header has 4" "... line 8: the field count"
like "$RUN_ERR" "nothing was imported" "... and says nothing was imported"
is "$(sq "$T" "SELECT count(*) || ':' || total(length(title)) FROM resource")" "$before" "... and the library is unchanged (not even the good row)"
printf 'title,colour\nx,red\n' >"$E2E_TMP/col.csv"
run "$EMPACT" resource import "$T" "$E2E_TMP/col.csv"
like "$RUN_RC:$RUN_ERR" "^65:.*line 1, column 2: 'colour' is not a column of resource" "an unknown header column is named"
printf 'title\n"unterminated\n' >"$E2E_TMP/quote.csv"
run "$EMPACT" resource import "$T" "$E2E_TMP/quote.csv"
like "$RUN_RC:$RUN_ERR" "^65:.*not valid CSV" "an unterminated quote is a clear CSV error"
printf 'title\n\xff\xfe bad bytes\n' >"$E2E_TMP/bin.csv"
run "$EMPACT" resource import "$T" "$E2E_TMP/bin.csv"
like "$RUN_RC:$RUN_ERR" "^65:.*line 2, column title: not valid UTF-8" "bytes that are not UTF-8 are refused"
run "$EMPACT" resource import "$T" "$E2E_TMP/missing.csv"
is "$RUN_RC" 74 "a missing file is an i/o error"
: >"$E2E_TMP/empty.csv"
run "$EMPACT" resource import "$T" "$E2E_TMP/empty.csv"
like "$RUN_RC:$RUN_ERR" "^65:.*the file is empty" "an empty file is refused"

# ---- help -------------------------------------------------------------------------------------------
for c in add edit list search import export; do
    run "$EMPACT" resource $c --help
    like "$RUN_RC:$RUN_OUT" "^0:usage: empact resource $c" "empact resource $c --help"
done

# ---- the library is shared: ottawa searches what toronto added -------------------------------------
must resource search "$O" anything
is "$RUN_OUT" "no resource matches" "ottawa's library is empty before it syncs (its search index is made now)"
site_sync toronto "toronto pushes its library"
site_sync ottawa "ottawa pulls it"
must resource search "$O" equite
like "$RUN_OUT" "Équité en santé" "ottawa finds toronto's resource: rows that arrive by sync are indexed"
must resource search "$O" "2nd edition"
like "$RUN_OUT" "Chronic conditions toolkit, 2nd edition" "... with the imported title"
assert_converged toronto ottawa
is "$(sq "$O" "SELECT count(*) FROM _empact_fts_resource") " "$(sq "$O" "SELECT count(*) FROM resource") " "ottawa's index has one entry per resource"
stop_hub
done_testing
