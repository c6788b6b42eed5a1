#!/usr/bin/env bash
# tests/sample/sample-site.sh - seeded sample data for one site, made with the
# site's own commands (so the demo exercises them as a coordinator would).
#
#   tests/sample/sample-site.sh EMPACT SITE.db PROFILE SEED
#
# PROFILE toronto: an established site, about Toronto's size: 22 HEAs from
#   2025-Q1 to 2026-Q3 (most closed, the newest in progress), decisions
#   informed at 6 hospitals, 4 provincial / regional bodies and 2 national
#   ones, 16 partner organisations with 48 impact partners, 70 members paid
#   for taking part, and 140 resources.
# PROFILE new: a newer site in a second jurisdiction: 5 HEAs, 4 organisations
#   with 8 partners, 1 hospital and 1 provincial decision, 14 members, and 60
#   resources.
# Resources are tagged across the OHT catalogue (the five population-health-
# management components, building blocks 1-8, the four population groups)
# and come in through `empact resource import` from a generated CSV file.
# The same SEED gives the same data.  Prints one line per kind of record.
set -euo pipefail

[ $# -eq 4 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
EMPACT=$1 DB=$2 PROFILE=$3
RANDOM=$4
case $PROFILE in
toronto) NHEA=22 NORG=16 PER_ORG=3 NMEMBER=70 NRES=140 DEC="6 4 2" FIRST=2025 GAP=26 START=0 ;;
new) NHEA=5 NORG=4 PER_ORG=2 NMEMBER=14 NRES=60 DEC="1 1 0" FIRST=2026 GAP=40 START=60 ;;
*) echo "sample-site.sh: PROFILE is toronto or new" >&2; exit 64 ;;
esac
e() { "$EMPACT" "$@" >/dev/null; }
rnd() { R=$((RANDOM % $1)); }   # never in $(...): a subshell draws from a copy of RANDOM

# day N after FIRST-01-01, as YYYY-MM-DD
day() { date -u -d "$FIRST-01-01 + $1 days" +%F; }

# ---- partners: organisations at three levels, people at each ---------------------------------
LEVELS=(hospital hospital provincial-regional hospital provincial-regional national)
KINDS=("General Hospital" "Health Centre" "Ontario Health region" "Community Hospital" "Public Health Unit" "Federal agency")
PLACES=(Lakeshore Riverdale Northgate Westview Eastbay Parkside Hillcrest Bayview Kingsway Fairmont Elmwood Highland Brookfield Oakridge Maple Cedar)
npartner=0
for ((o = 0; o < NORG; o++)); do
    k=$((o % ${#LEVELS[@]}))
    org="${PLACES[o % ${#PLACES[@]}]} ${KINDS[k]}"
    for ((p = 0; p < PER_ORG; p++)); do
        e partner add "$DB" --organisation "$org" --level "${LEVELS[k]}" --contact "contact$p@$(printf '%s' "${PLACES[o % ${#PLACES[@]}]}" | tr 'A-Z' 'a-z').example"
        npartner=$((npartner + 1))
    done
done
echo "$npartner impact partners at $NORG organisations"

for ((m = 1; m <= NMEMBER; m++)); do e member add "$DB" --name "Member $m"; done
echo "$NMEMBER members"

# ---- HEAs: opened every ~3 weeks, each step 1-4 weeks after the last ----------------------------
TOPICS=("Emergency department wait times" "Discharge planning" "Mental health navigation" "Home care for older adults"
    "Chronic disease self-management" "Palliative care at home" "Primary care access" "Diabetes education"
    "Interpreter services" "Cancer screening outreach" "Hospital food and culture" "Transportation to appointments")
declare -a CLOSED_AT
paid=0
for ((h = 1; h <= NHEA; h++)); do
    rnd 10; d=$((START + (h - 1) * GAP + R))
    e hea add "$DB" --title "${TOPICS[(h - 1) % ${#TOPICS[@]}]} ($h)" --opened "$(day "$d")"
    rnd "$npartner"; e hea partner "$DB" "$h" $((R + 1))
    rnd "$npartner"; e hea partner "$DB" "$h" $((R + 1))
    # the newest HEAs are still under way: the last three stop at an earlier step
    steps=5
    [ "$h" -gt $((NHEA - 3)) ] && steps=$((NHEA - h + 1))
    for ((s = 1; s <= steps; s++)); do
        rnd 21; d=$((d + 7 + R))
        if [ "$s" = 2 ] && [ $((h % 7)) = 3 ]; then
            e hea advance "$DB" "$h" --skip --because "the partner had scoped it already" --on "$(day "$d")"
            continue
        fi
        if [ "$s" = 5 ] && [ $((h % 4)) = 0 ]; then
            e hea advance "$DB" "$h" --skip --because "the partner has not said what changed" --on "$(day "$d")"
            continue
        fi
        if [ "$s" = 3 ]; then   # the engagement: members take part and are paid
            rnd 5; n=$((3 + R))
            for ((k = 0; k < n; k++)); do
                rnd 3; amount=$((100 + 25 * R))
                rnd "$NMEMBER"; e hea pay "$DB" "$h" --member $((R + 1)) --amount "$amount" --on "$(day "$d")"
                paid=$((paid + 1))
            done
        fi
        e hea advance "$DB" "$h" --on "$(day "$d")"
    done
    CLOSED_AT[h]=$d
done
echo "$NHEA HEAs, $paid payments to members"

# ---- decisions informed, by level, after each HEA's report ---------------------------------------
read -r nh np nn <<<"$DEC"
pick_partner() { # LEVEL -> P: a partner id at that level
    P=$("$EMPACT" partner list "$DB" --json | tr -d ' \n\t' | grep -o "\"id\":[0-9]*,\"organisation\":\"[^\"]*\",\"level\":\"$1\"" |
        sed 's/"id":\([0-9]*\),.*/\1/' | head -n $((R + 1)) | tail -n 1)
}
h=1
for spec in "hospital $nh" "provincial-regional $np" "national $nn"; do
    read -r level count <<<"$spec"
    for ((i = 0; i < count; i++)); do
        rnd 2; pick_partner "$level"
        while [ "$h" -gt $((NHEA - 3)) ]; do h=1; done   # decisions follow a report
        e hea decision "$DB" "$h" --partner "$P" --what "Changed practice after HEA $h ($level)" \
            --on "$(day $((CLOSED_AT[h] + 10)))"
        h=$((h + 1))
    done
done
echo "decisions informed: $nh hospital, $np provincial-regional, $nn national"

# ---- resources, tagged across the OHT catalogue, imported from CSV ----------------------------------
COMPONENTS=("population identification" "segmentation for needs, risks and barriers"
    "co-designing care models and service mix" "implementation and reach" "monitoring and evaluation")
PGROUPS=("older adults" "people with chronic conditions" "mental health and addictions" "palliative approach" "")
RKINDS=(toolkit guide report video checklist)
WORDS=(equity engagement partners "lived experience" access barriers "health data" navigation outreach
    "community tables" evaluation co-design language culture caregivers transitions)
csv=$(mktemp "${TMPDIR:-/tmp}/sample-resources.XXXXXX")
trap 'rm -f "$csv"' EXIT
{
    echo "title,summary,kind,language,phm_component,oht_block,population_group,url"
    for ((i = 1; i <= NRES; i++)); do
        rnd ${#WORDS[@]}; w1=${WORDS[R]}; rnd ${#WORDS[@]}; w2=${WORDS[R]}
        rnd ${#RKINDS[@]}; kind=${RKINDS[R]}
        c=${COMPONENTS[i % 5]}; g=${PGROUPS[(i / 5) % 5]}; b=$(((i % 8) + 1))
        lang=en; [ $((i % 9)) = 0 ] && lang=fr
        printf '"%s %s: a %s (%s %d)","How %s and %s shape care for %s","%s",%s,"%s",%d,"%s",https://resources.example/%s/%d\n' \
            "${w1^}" "$w2" "$kind" "$PROFILE" "$i" "$w1" "$w2" "${g:-everyone}" "$kind" "$lang" "$c" "$b" "$g" "$PROFILE" "$i"
    done
} >"$csv"
"$EMPACT" resource import "$DB" "$csv" | sed 's/ from .*:/:/'
