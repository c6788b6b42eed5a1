#!/usr/bin/env bash
# 17-convergence.t - a seeded random property test: 4 sites edit a small shared
# pool of resource rows (so they collide) and their own metric values, sync in
# random order, and some syncs are cut: the site killed at a random test point
# (EMPACT_KILL_AFTER), or the hub started with EMPACT_KILL_AFTER so that it dies
# under a sync.  At the end every site syncs twice with no new edits, then:
#   - every replica's replicated tables equal hub.db's (sqldiff --table);
#   - every replica's dataset hash (status --json "dataset") is HEAD^{tree};
#   - git fsck is clean, HEAD is the newest version, hub.db equals the tree;
#   - each site's own metric values are the last ones it wrote;
#   - no input is dropped silently (the property below);
#   - every conflict entry that names a value a site typed names that site as
#     the loser, and each site holds exactly the hub's entries for it.
#
# The property.  Every value is unique ("<site>-<op>-<column>"), so a ledger of
# writes (site, row, column, value, and the value the site's replica showed
# just before: its "prior") tells who typed what, and what each writer saw.
# A value V that site S wrote to (row, column) and that is not the hub's final
# value must be accounted for by one of:
#   (a) S itself wrote that column of that row again later, or deleted the row;
#   (b) another site wrote that column, or deleted the row, while its replica
#       showed V (it replaced V knowingly: no conflict);
#   (c) the hub's _empact_conflict has an entry for that row and column with
#       loser_site = S and lost_value = V (overwritten, overridden, deleted,
#       update-of-deleted; or 'rejected' with V among its lines).
# This is weaker than the exact policy (who wins by edit time), and sound: under
# the documented policy a value disappears only by (a), (b), or a logged conflict.
#
# E2E_SEED replays a run (the seed is printed first); E2E_OPS: number of
# operations (default 240, at least 200); E2E_CUTS=0 makes every sync a plain
# one (to tell a merge bug from a crash-recovery bug when replaying a seed).
# Requires a build with test hooks.
. "$(dirname "$0")/lib.sh"
require_test_hooks

SEED=${E2E_SEED:-$(($(date +%s%N) / 1000 % 1000000000))}
diag "seed $SEED (replay with E2E_SEED=$SEED)"
RANDOM=$SEED
OPS=${E2E_OPS:-240}
[ "$OPS" -ge 200 ] || OPS=200
SITES=(north south east west)
setup_hub_and_sites "${SITES[@]}"
exec 3>&2 2>>"$E2E_TMP/job-notices.txt"

# Never call these in $(...): a subshell draws from a copy of RANDOM.
rnd() { R=$((RANDOM % $1)); }
K=12
POOL=()
for ((i = 0; i < K; i++)); do POOL+=("$(printf '%08x-%04x-4000-8000-%012x' "$((SEED % 4294967296))" "$i" "$i")"); done
TRACKED=(title summary url kind)
WLOG="$E2E_TMP/writes.tsv"
: >"$WLOG"
N=0                            # operation number
declare -A PRIOR EXISTS MV STATS
BAD_RC=""

wlog() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$N" "$@" >>"$WLOG"; }   # site kind key col value prior
unq() { if [ "$1" = NULL ]; then U='\N'; else U=${1#\'}; U=${U%\'}; fi; }

# resource_op SITE "KEYS" SQL: reads what the replica shows for KEYS (PRIOR,
# EXISTS), then runs SQL, in one sqlite3 call.
resource_op() {
    local s=$1 keys=$2 sql=$3 in="" k out tag t su u ki
    for k in $keys; do in="$in'$k',"; done
    PRIOR=() EXISTS=()
    if ! out=$(sq "$(site_db "$s")" "SELECT 'P', id, quote(title), quote(summary), quote(url), quote(kind)
                                     FROM resource WHERE id IN (${in%,}); $sql" 2>&1); then
        fail "op $N ($s): $sql"
        diag "$out"
        return 1
    fi
    while IFS='|' read -r tag k t su u ki; do
        [ "$tag" = P ] || continue
        EXISTS[$k]=1
        unq "$t"; PRIOR[$k|title]=$U
        unq "$su"; PRIOR[$k|summary]=$U
        unq "$u"; PRIOR[$k|url]=$U
        unq "$ki"; PRIOR[$k|kind]=$U
    done <<<"$out"
}
prior() { if [ -n "${EXISTS[$1]:-}" ]; then P=${PRIOR[$1|$2]}; else P='\A'; fi; }

# random_cols: COLS = title plus a random subset of the other tracked columns
random_cols() {
    local c
    COLS="title"
    for c in summary url kind; do rnd 2; [ "$R" -eq 0 ] && COLS="$COLS $c"; done
}
# ins_sql VERB S KEY: "VERB INTO resource(id, COLS...) VALUES (...)"; VAL[c] set
declare -A VAL
ins_sql() {
    local c names="id" vals="'$3'"
    for c in $COLS; do VAL[$c]="$2-$N-$c"; names="$names, $c"; vals="$vals, '${VAL[$c]}'"; done
    SQL="$1 INTO resource($names) VALUES ($vals)"
}
# log_insert S KEY: an insert happened (row absent before): every tracked column written.
log_insert() {
    local c v
    for c in "${TRACKED[@]}"; do
        v='\N'; [[ " $COLS " == *" $c "* ]] && v=${VAL[$c]}
        prior "$2" "$c"
        wlog "$1" W "$2" "$c" "$v" "$P"
    done
}
log_update() { # S KEY COLS...: the listed columns written, if the row was there
    local s=$1 key=$2 c; shift 2
    [ -n "${EXISTS[$key]:-}" ] || return 0
    for c in "$@"; do wlog "$s" W "$key" "$c" "${VAL[$c]}" "${PRIOR[$key|$c]}"; done
}
pick_col() { # a column, title most often (the same column collides)
    rnd 10
    if [ "$R" -lt 5 ]; then COL=title; elif [ "$R" -lt 7 ]; then COL=summary; elif [ "$R" -lt 9 ]; then COL=url; else COL=kind; fi
}

op_resource() {
    local s=$1 key c set k2 col2 cols
    rnd "$K"; key=${POOL[$R]}
    rnd 100
    if [ "$R" -lt 20 ]; then                        # upsert
        STATS[upsert]=$((${STATS[upsert]:-0} + 1))
        random_cols; ins_sql INSERT "$s" "$key"
        set=""; for c in $COLS; do set="$set, $c = excluded.$c"; done
        resource_op "$s" "$key" "$SQL ON CONFLICT (id) DO UPDATE SET ${set#, };" || return
        if [ -n "${EXISTS[$key]:-}" ]; then log_update "$s" "$key" $COLS; else log_insert "$s" "$key"; fi
    elif [ "$R" -lt 45 ]; then                      # update one column
        STATS[update1]=$((${STATS[update1]:-0} + 1))
        pick_col; VAL[$COL]="$s-$N-$COL"
        resource_op "$s" "$key" "UPDATE resource SET $COL = '${VAL[$COL]}' WHERE id = '$key';" || return
        log_update "$s" "$key" "$COL"
    elif [ "$R" -lt 55 ]; then                      # update several columns (and oht_block)
        STATS[update2]=$((${STATS[update2]:-0} + 1))
        pick_col; cols=$COL
        pick_col; [[ " $cols " == *" $COL "* ]] || cols="$cols $COL"
        pick_col; [[ " $cols " == *" $COL "* ]] || cols="$cols $COL"
        set=""; for c in $cols; do VAL[$c]="$s-$N-$c"; set="$set, $c = '${VAL[$c]}'"; done
        rnd 8
        resource_op "$s" "$key" "UPDATE resource SET ${set#, }, oht_block = $((R + 1)) WHERE id = '$key';" || return
        log_update "$s" "$key" $cols
    elif [ "$R" -lt 62 ]; then                      # delete
        STATS[delete]=$((${STATS[delete]:-0} + 1))
        resource_op "$s" "$key" "DELETE FROM resource WHERE id = '$key';" || return
        if [ -n "${EXISTS[$key]:-}" ]; then
            for c in "${TRACKED[@]}"; do wlog "$s" D "$key" "$c" '\D' "${PRIOR[$key|$c]}"; done
        fi
    elif [ "$R" -lt 67 ]; then                      # INSERT OR REPLACE: unlisted columns become NULL
        STATS[replace]=$((${STATS[replace]:-0} + 1))
        random_cols; ins_sql 'INSERT OR REPLACE' "$s" "$key"
        resource_op "$s" "$key" "$SQL;" || return
        log_insert "$s" "$key"
    elif [ "$R" -lt 74 ]; then                      # INSERT OR IGNORE
        STATS[insert]=$((${STATS[insert]:-0} + 1))
        random_cols; ins_sql 'INSERT OR IGNORE' "$s" "$key"
        resource_op "$s" "$key" "$SQL;" || return
        [ -n "${EXISTS[$key]:-}" ] || log_insert "$s" "$key"
    elif [ "$R" -lt 82 ]; then                      # one transaction, two rows
        STATS[txn]=$((${STATS[txn]:-0} + 1))
        rnd "$K"; k2=${POOL[$R]}
        [ "$k2" = "$key" ] && k2=${POOL[$(((R + 1) % K))]}
        pick_col; col2=$COL; VAL[$col2]="$s-$N-$col2"
        pick_col; VAL[$COL]="$s-$N-$COL"   # (the same column of two rows may get the same value)
        resource_op "$s" "$key $k2" "BEGIN;
UPDATE resource SET $col2 = '${VAL[$col2]}' WHERE id = '$key';
UPDATE resource SET $COL = '${VAL[$COL]}', updated_at = '$N' WHERE id = '$k2';
COMMIT;" || return
        log_update "$s" "$key" "$col2"
        log_update "$s" "$k2" "$COL"
    else                                            # oht_block only (not tracked: integers repeat)
        STATS[block]=$((${STATS[block]:-0} + 1))
        rnd 8
        resource_op "$s" "$key" "UPDATE resource SET oht_block = $((R + 1)) WHERE id = '$key';" || return
        [ -n "${EXISTS[$key]:-}" ] && wlog "$s" W "$key" oht_block "$((R + 1))" -
    fi
}

op_metric() {
    local s=$1 m p out sql metrics=(heas_completed impact_partners decisions_hospital)
    rnd 3; m=${metrics[$R]}
    rnd 2; p="2026-Q$((R + 1))"
    local where="site_id = '$s' AND metric = '$m' AND period = '$p'"
    rnd 10
    if [ "$R" -lt 6 ]; then
        sql="INSERT INTO metric_value(site_id, metric, period, value, updated_at) VALUES ('$s', '$m', '$p', $N, 'op $N')
             ON CONFLICT (site_id, metric, period) DO UPDATE SET value = excluded.value, suppressed = 0, updated_at = excluded.updated_at;"
    elif [ "$R" -lt 8 ]; then
        sql="UPDATE metric_value SET value = NULL, suppressed = 1 WHERE $where;"
    else
        sql="DELETE FROM metric_value WHERE $where;"
    fi
    STATS[metric]=$((${STATS[metric]:-0} + 1))
    if ! out=$(sq "$(site_db "$s")" "$sql SELECT 'M', quote(value), suppressed FROM metric_value WHERE $where;" 2>&1); then
        fail "op $N ($s): $sql"; diag "$out"; return
    fi
    MV[$s|$m|$p]=${out#M|}
}

HUB_ARMED=0
hub_back() { # the hub died: start it again, normally
    hub_reap
    start_hub "$HUB_DIR" || give_up "hub restart"
    sites_follow_hub "${SITES[@]}"
    HUB_ARMED=0
}

do_sync() {
    local s=$1 kind k=0 ok_rcs="0"
    rnd 100
    if [ "$R" -lt 65 ] || [ "${E2E_CUTS:-1}" = 0 ]; then
        kind=plain
    elif [ "$R" -lt 85 ]; then
        kind=site-kill
        rnd 30; k=$((R + 1)); ok_rcs="0 137"
    else
        kind=hub-kill
        rnd 45; k=$((R + 3))
        if [ "$HUB_ARMED" = 1 ]; then hub_kill; else stop_hub; fi   # (an armed hub may be dying)
        EMPACT_KILL_AFTER=$k start_hub "$HUB_DIR" || give_up "hub start"
        sites_follow_hub "${SITES[@]}"
        HUB_ARMED=1
    fi
    [ "$HUB_ARMED" = 1 ] && ok_rcs="$ok_rcs 75"
    STATS[sync-$kind]=$((${STATS[sync-$kind]:-0} + 1))
    if [ "$kind" = site-kill ]; then
        EMPACT_KILL_AFTER=$k run "$EMPACT" sync "$(site_db "$s")"
    else
        run "$EMPACT" sync "$(site_db "$s")"
    fi
    STATS[rc-$RUN_RC]=$((${STATS[rc-$RUN_RC]:-0} + 1))
    wlog "$s" SYNC - "$kind:$k" "$RUN_RC" "$(printf '%s' "$RUN_OUT" | sed 's/^[^:]*: //' | tr '\t\n' '  ')"
    if [[ " $ok_rcs " != *" $RUN_RC "* ]]; then
        BAD_RC="${BAD_RC}op $N: $s sync ($kind $k) exited $RUN_RC: $(printf '%s' "$RUN_ERR" | head -n 2)"$'\n'
    fi
    if ! hub_alive; then
        [ "$HUB_ARMED" = 1 ] || BAD_RC="${BAD_RC}op $N: the hub died, and no kill was armed"$'\n'
        hub_back
    fi
}

# ---- the random run ----------------------------------------------------------------------
for ((N = 1; N <= OPS; N++)); do
    rnd 4; S=${SITES[$R]}
    rnd 100
    if [ "$R" -lt 80 ]; then op_resource "$S"; else op_metric "$S"; fi
    rnd 100
    if [ "$R" -lt 28 ]; then rnd 4; do_sync "${SITES[$R]}"; fi
done
N=$((OPS + 1))
is "$BAD_RC" "" "every sync during the run exited 0, or 137 when killed, or 75 when the hub died"
if [ "$HUB_ARMED" = 1 ]; then   # no kill pending for the final syncs
    hub_kill
    hub_back
fi
for pass in 1 2; do
    for s in "${SITES[@]}"; do site_sync "$s" "final sync, pass $pass: $s"; done
done
exec 2>&3
diag "operations: $(for k in "${!STATS[@]}"; do echo "$k=${STATS[$k]}"; done | sort | paste -sd' ')"
diag "$(awk -F'\t' '$3 == "W" { w++ } $3 == "D" && $5 == "title" { d++ } END { printf "column writes logged: %d, row deletes: %d", w, d }' "$WLOG")"
diag "conflict log: $(hub_sql "SELECT kind || '=' || count(*) FROM _empact_conflict GROUP BY kind" | paste -sd' ')"

# ---- same data everywhere -------------------------------------------------------------------
head_tree=$(hub_git rev-parse 'HEAD^{tree}' 2>&1)
for s in "${SITES[@]}"; do
    replica_matches_hub "$s: every replicated table equals hub.db's" "$s"
    is "$(status_json "$s" dataset)" "$head_tree" "$s: dataset hash is HEAD^{tree}"
done
run git -C "$HUB_DIR/history.git" fsck --strict --no-dangling
is "$RUN_RC:$RUN_OUT$RUN_ERR" "0:" "git fsck --strict is clean"
maxseq=$(hub_max_seq)
is "$(hub_git rev-parse HEAD 2>&1) $(hub_git rev-list --count HEAD 2>&1)" \
    "$(hub_sql "SELECT commit_id FROM _empact_version WHERE seq = $maxseq") $maxseq" \
    "HEAD is the newest version's commit, one commit per version"
assert_tree_matches_hub "hub.db's replicated tables equal the tree at HEAD"
is "$(hub_sql "SELECT count(*) FROM (SELECT 1 FROM _empact_version WHERE push_id IS NOT NULL GROUP BY push_id HAVING count(*) > 1)")" \
    0 "no push id twice in _empact_version"

# ---- owned rows: the last value each site wrote ---------------------------------------------
want=$(for k in "${!MV[@]}"; do [ -n "${MV[$k]}" ] && echo "$k|${MV[$k]}"; done | sort)
got=$(hub_sql "SELECT site_id || '|' || metric || '|' || period || '|' || quote(value) || '|' || suppressed
               FROM metric_value WHERE site_id IN ($(printf "'%s'," "${SITES[@]}" | sed 's/,$//'))" | sort)
[ "$got" = "$want" ]
ok $? "each site's metric values on the hub are the last ones it wrote ($(printf '%s' "$want" | grep -c .) rows)" ||
    diag "got:" "$got" "expected:" "$want" "(seed $SEED)"

# ---- nothing dropped silently -----------------------------------------------------------------
hub_sql "SELECT id, quote(title), quote(summary), quote(url), quote(kind) FROM resource" >"$E2E_TMP/final.txt"
sqlite3 -batch -separator $'\x1f' -newline $'\x1e' "$HUB_DIR/hub.db" \
    "SELECT id, tbl, row_key, col, kind, loser_site, lost_value, winner_site, kept_value FROM _empact_conflict ORDER BY id" \
    >"$E2E_TMP/conflicts.txt" </dev/null
cat >"$E2E_TMP/oracle.pl" <<'PERL'
use strict; use warnings;
my ($wfile, $ffile, $cfile, $mode) = @ARGV;
my (@w, %by_key);
open my $W, '<', $wfile or die "$wfile: $!";
while (<$W>) {
    chomp;
    my ($n, $site, $kind, $key, $col, $val, $prior) = split /\t/, $_, -1;
    my $e = { n => $n, site => $site, kind => $kind, key => $key, col => $col, val => $val, prior => $prior };
    push @w, $e;
    push @{ $by_key{$key} }, $e if $kind ne 'SYNC';
}
my %final;
open my $F, '<', $ffile or die;
while (<$F>) {
    chomp;
    my ($id, @v) = split /\|/, $_, -1;
    my %r; @r{qw(title summary url kind)} = map { $_ eq 'NULL' ? '\N' : s/^'(.*)'$/$1/r } @v;
    $final{$id} = \%r;
}
my @c;
{ local $/; open my $C, '<', $cfile or die; my $all = <$C>; for my $rec (split /\x1e/, $all) {
    next if $rec eq '';
    my %e; @e{qw(id tbl key col kind loser lost winner kept)} = split /\x1f/, $rec, -1; push @c, \%e; } }
my $bad = 0;
sub dq { return qq("$_[0]"); }
if ($mode eq 'lost') {
    for my $x (@w) {
        next unless $x->{kind} eq 'W' && $x->{val} =~ /^[a-z]+-\d+-[a-z]+$/;
        my ($k, $col, $v, $s, $n) = @$x{qw(key col val site n)};
        my $fv = $final{$k} ? $final{$k}{$col} : '(no row)';
        next if $fv eq $v;
        my @later = grep { $_->{n} > $n && $_->{col} eq $col } @{ $by_key{$k} };
        next if grep { $_->{site} eq $s } @later;                        # (a) superseded by itself
        next if grep { $_->{site} ne $s && $_->{prior} eq $v } @later;   # (b) replaced knowingly
        my @entries = grep { $_->{tbl} eq 'resource' && $_->{key} eq dq($k) } @c;
        next if grep { $_->{loser} eq $s && (($_->{col} eq $col && $_->{lost} eq dq($v))
                       || ($_->{kind} eq 'rejected' && $_->{lost} =~ /^\Q$col: "$v"\E$/m)) } @entries;   # (c)
        $bad++;
        next if $bad > 20;
        my @named = grep { $_->{col} eq $col && $_->{lost} eq dq($v) } @entries;
        print "$s wrote $col = $v to $k at op $n; the hub ends with $fv, and ",
            (@named ? "the conflict log names it only for " . join(',', map { "$_->{loser} ($_->{kind})" } @named)
                    : "no conflict entry names it"), "\n";
        next if $bad > 3;   # the first three in detail
        print "  history: every write to this column of the row, each followed by its site's syncs up to the\n",
              "  first that succeeded (op site what; a sync shows its kind, exit status and summary line):\n";
        my (@lines, %seen);
        for my $h (grep { $_->{kind} ne 'SYNC' && $_->{key} eq $k && $_->{col} eq $col } @w) {
            push @lines, $h;
            for my $sy (grep { $_->{kind} eq 'SYNC' && $_->{site} eq $h->{site} && $_->{n} >= $h->{n} } @w) {
                push @lines, $sy unless $seen{$sy}++;
                last if $sy->{val} eq '0';
            }
        }
        @lines = sort { $a->{n} <=> $b->{n} || ($a->{kind} eq 'SYNC') <=> ($b->{kind} eq 'SYNC') } @lines;
        my $shown = 0;
        for my $e (@lines) {
            last if ++$shown > 45;
            printf "    %4d %-6s %s\n", $e->{n}, $e->{site},
                $e->{kind} eq 'SYNC' ? "sync ($e->{col}) exit $e->{val}: $e->{prior}"
                : $e->{kind} eq 'D' ? "deletes the row (saw $col = $e->{prior})"
                : "writes $col = $e->{val} (saw $e->{prior})";
        }
        print "  conflict entries for $k $col: ", (join('; ', map { "#$_->{id} $_->{kind} loser $_->{loser} lost $_->{lost} winner $_->{winner} kept $_->{kept}" } grep { $_->{col} eq $col } @entries) || 'none'), "\n";
    }
    print "... and ", $bad - 20, " more\n" if $bad > 20;
} else {   # every entry that names a typed value names its typist
    for my $e (@c) {
        next unless $e->{lost} =~ /^"([a-z]+)-(\d+)-([a-z]+)"$/;
        next if $1 eq $e->{loser};
        $bad++;
        print "conflict #$e->{id} ($e->{kind}, $e->{key} $e->{col}): lost $e->{lost}, typed by $1 at op $2, but loser_site is $e->{loser}\n" if $bad <= 8;
    }
    print "... and ", $bad - 8, " more\n" if $bad > 8;
}
exit($bad ? 1 : 0);
PERL
out=$(perl "$E2E_TMP/oracle.pl" "$WLOG" "$E2E_TMP/final.txt" "$E2E_TMP/conflicts.txt" lost 2>&1)
ok $? "every written value not on the hub was superseded by its own site, replaced knowingly, or is in the conflict log as that site's loss" ||
    diag "$out" "(seed $SEED)"
out=$(perl "$E2E_TMP/oracle.pl" "$WLOG" "$E2E_TMP/final.txt" "$E2E_TMP/conflicts.txt" typist 2>&1)
ok $? "every conflict entry whose lost value a site typed names that site as loser_site" || diag "$out" "(seed $SEED)"
for s in "${SITES[@]}"; do
    is "$(site_sql "$s" "SELECT id || ' ' || tbl || ' ' || row_key || ' ' || col || ' ' || kind || ' ' || lost_value FROM _empact_conflict ORDER BY id")" \
       "$(hub_sql "SELECT id || ' ' || tbl || ' ' || row_key || ' ' || col || ' ' || kind || ' ' || lost_value FROM _empact_conflict WHERE loser_site = '$s' ORDER BY id")" \
       "$s holds exactly the hub's conflict entries for it"
done
stop_hub
done_testing
