#!/usr/bin/env bash
# tests/bench/run.sh - `make bench`: EMPaCT Sync against baselines measured
# in the same run on the same machine, each target of issue #8 as a ratio
# with PASS or MISS.  Results (median and min of RUNS runs) are printed and
# written to bench/results/latest.md (and a dated copy).
#
#   bash tests/bench/run.sh BIN_DIR
#
# BENCH_BIG    rows of the big replica (default 1000000)
# BENCH_SMALL  rows of the small one, for "cost follows the changes" (10000)
# BENCH_BULK   rows of the bulk sync (100000)
# BENCH_RUNS   runs of each timed measure (3)
# BENCH_LOAD_SITES, BENCH_LOAD_SECONDS  the load test (100 sites, 20 s; the
#              full soak of issue #8 is 200 sites for 60 s)
# BENCH_QUICK=1  a smoke run: BIG 100000, BULK 20000, RUNS 1, 20 sites for 5 s
#
# Everything runs on 127.0.0.1 on ports the hubs pick, in a temporary
# directory removed at the end; every hub started is stopped.
set -euo pipefail

BIN=$(cd "${1:-bin}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    : "${BENCH_BIG:=100000}" "${BENCH_BULK:=20000}" "${BENCH_RUNS:=1}"
    : "${BENCH_LOAD_SITES:=20}" "${BENCH_LOAD_SECONDS:=5}"
fi
BIG=${BENCH_BIG:-1000000}
SMALL=${BENCH_SMALL:-10000}
BULK=${BENCH_BULK:-100000}
RUNS=${BENCH_RUNS:-3}
CHANGED=1000
PUSH_BATCH=50000
RAWPIPE=$ROOT/build/bench/rawpipe
LOAD=$ROOT/build/bench/load
LOAD_SITES=${BENCH_LOAD_SITES:-100}
LOAD_SECONDS=${BENCH_LOAD_SECONDS:-20}
export LC_ALL=C TZ=UTC

T=$(mktemp -d /tmp/empact-bench.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

say() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
# secs CMD...: runs CMD (output to $T/last.out and $T/last.err), prints the wall seconds.
secs() {
    local t0 t1
    t0=$(now)
    "$@" >"$T/last.out" 2>"$T/last.err" || { cat "$T/last.err" >&2; return 1; }
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}
# stats V...: "median min" of the values.
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.10g %.10g\n", m, v[1]}'; }
ratio() { echo "$1 / $2" | bc -l | awk '{printf "%.4g", $1}'; }
# s3 X: seconds shown with 3 decimals.
s3() { printf '%.3f' "$1"; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a <= b)}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }

# ---- hubs and sites ---------------------------------------------------------------------------
# hub_start DIR [serve options]: serves DIR; sets PORT and HUBPID.
hub_start() {
    local dir=$1 i
    shift
    "$BIN/empact-hub" serve "$dir" --listen 127.0.0.1:0 "$@" >"$dir.out" 2>>"$dir.log" </dev/null &
    HUBPID=$!
    PIDS+=($!)
    for i in $(seq 1 200); do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir.out")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    say "hub $dir did not start"; exit 1
}
# site_new HUB SITE: enrols and joins SITE (replica $T/SITE.db).
site_new() {
    "$BIN/empact-hub" add-site "$1" "$2" --address "127.0.0.1:$PORT" -o "$T/$2.join" >/dev/null
    "$BIN/empact" join "$T/$2.db" "$T/$2.join" >/dev/null
}
# add_rows DB N PREFIX: N new resources, as a coordinator's shell would.
add_rows() {
    sqlite3 "$1" "WITH RECURSIVE k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < $2)
        INSERT INTO resource (id, title, url, summary, kind, oht_block, added_by_site, updated_at)
        SELECT printf('$3%07d', j), 'Resource ' || j, 'https://example.org/r/' || j,
               'Summary of resource ' || j || ': ' || hex(randomblob(16)), 'guide', 1 + j % 8,
               'bench', '2026-12-01T00:00:00Z' FROM k"
}
# sync_json DB: one sync with a JSON log line in $T/sync.json.
sync_json() { "$BIN/empact" sync "$1" --log-format json >/dev/null 2>"$T/sync.json"; }
# fill HUBSITE N: N rows pushed from site HUBSITE in batches of PUSH_BATCH.
fill() {
    local site=$1 n=$2 done=0 b k=0
    while [ "$done" -lt "$n" ]; do
        b=$((n - done < PUSH_BATCH ? n - done : PUSH_BATCH))
        add_rows "$T/$site.db" "$b" "f$k-"
        sync_json "$T/$site.db"
        done=$((done + b))
        k=$((k + 1))
        say "  $site: $done of $n rows pushed"
    done
}

RESULTS=()
# time_row MEASURE TARGET_TEXT LIMIT: a row for two timed series in the
# arrays base and ours (seconds), PASS when median(ours)/median(base) <= LIMIT.
time_row() {
    local bm bmin om omin rt v
    read -r bm bmin <<<"$(stats "${base[@]}")"
    read -r om omin <<<"$(stats "${ours[@]}")"
    rt=$(ratio "$om" "$bm")
    le "$rt" "$3" && v=PASS || v=MISS
    row "$1" "$2" "$(s3 "$bm") s (min $(s3 "$bmin"))" "$(s3 "$om") s (min $(s3 "$omin"))" "$rt" "$v"
}
# row MEASURE TARGET_TEXT BASELINE OURS RATIO VERDICT
row() { RESULTS+=("| $1 | $3 | $4 | $5 | $2 | $6 |"); printf '%-62s %-10s %s\n' "$1" "$5" "$6"; }

mkdir -p "$ROOT/build/bench"
cc -O2 -o "$RAWPIPE" "$HERE/rawpipe.c" $(pkg-config --cflags --libs sqlite3 libzstd) \
    -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK
# shellcheck disable=SC2046
cc -O2 -std=c17 -D_GNU_SOURCE -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK \
    -iquote "$ROOT/common" -iquote "$ROOT/client" -o "$LOAD" "$HERE/load.c" \
    "$ROOT/build/libclient.a" "$ROOT/build/libcommon.a" \
    $(pkg-config --cflags --libs sqlite3 libgit2 libzstd openssl libcjson libbsd zlib libdeflate) -lcsv -lpthread -lm

say "sizes: big $BIG rows, small $SMALL, bulk $BULK, $CHANGED changed; $RUNS runs each"

# ---- the big hub and two sites ------------------------------------------------------------------
"$BIN/empact-hub" init "$T/big" >/dev/null
hub_start "$T/big"
BIGPORT=$PORT
site_new "$T/big" seed
say "filling the big hub"
fill seed "$BIG"
# the hub folds in the background: wait for any fold (gc takes the fold lock)
# and fold what is left, so no fold runs during what is timed
"$BIN/empact-hub" gc "$T/big" >/dev/null

# ---- new-site bootstrap vs zstd -d of the same snapshot file ------------------------------------
# The snapshot file: the replicated tables of the hub's head version as one
# SQLite file (what a naive join would download), zstd -3.
sqlite3 "$T/big/hub.db" "VACUUM INTO '$T/snap.db'"
sqlite3 "$T/snap.db" "$(sqlite3 "$T/snap.db" "SELECT 'DROP TABLE \"' || name || '\";' FROM sqlite_schema
    WHERE type = 'table' AND name NOT IN ('resource', 'metric_value', 'metric', 'site')")" "VACUUM"
zstd -3 -q -f "$T/snap.db" -o "$T/snap.db.zst"
base=() ours=()
for r in $(seq 1 "$RUNS"); do
    base+=("$(secs zstd -d -q -f "$T/snap.db.zst" -o "$T/snap-out.db")")
    "$BIN/empact-hub" add-site "$T/big" "boot$r" --address "127.0.0.1:$BIGPORT" -o "$T/boot$r.join" >/dev/null
    ours+=("$(secs "$BIN/empact" join "$T/boot$r.db" "$T/boot$r.join")")
    [ "$r" -lt "$RUNS" ] && rm -f "$T/boot$r.db"*
done
time_row "new-site bootstrap of $BIG rows vs zstd -d of the snapshot file" "≤ 2×" 2

# ---- 1,000 changed rows in the big replica: wire bytes vs whole-file zstd -----------------------
site_new "$T/big" a2
zstd -3 -q -f "$T/a2.db" -o "$T/a2.db.zst"
whole=$(stat -c %s "$T/a2.db.zst")
sqlite3 "$T/a2.db" "UPDATE resource SET summary = summary || ' (edited)' WHERE id IN
    (SELECT id FROM resource ORDER BY id LIMIT $CHANGED)"
sync_json "$T/a2.db"
sent=$(perl -MJSON::PP -ne 'print decode_json($_)->{bytes_sent}' "$T/sync.json")
recv=$(perl -MJSON::PP -ne 'print decode_json($_)->{bytes_received}' "$T/sync.json")
wire=$((sent + recv))
rt=$(ratio "$wire" "$whole")
le "$rt" 0.001 && v=PASS || v=MISS
row "wire bytes, $CHANGED changed rows in a $BIG-row replica vs whole-file zstd -3" "≤ 1/1000" \
    "$whole B" "$wire B ($sent sent, $recv received)" "$rt" "$v"

# ---- cost follows the changes: a 1k-row sync against BIG vs SMALL tables ------------------------
"$BIN/empact-hub" init "$T/small" >/dev/null
hub_start "$T/small"
site_new "$T/small" sseed
fill sseed "$SMALL"
"$BIN/empact-hub" gc "$T/small" >/dev/null
base=() ours=()
for r in $(seq 1 "$RUNS"); do
    add_rows "$T/sseed.db" "$CHANGED" "s$r-"
    base+=("$(secs "$BIN/empact" sync "$T/sseed.db")")
    add_rows "$T/a2.db" "$CHANGED" "b$r-"
    ours+=("$(secs "$BIN/empact" sync "$T/a2.db")")
done
time_row "time of a $CHANGED-row sync, $BIG-row vs $SMALL-row tables" "≤ 1.5×" 1.5

# ---- bulk sync: wire bytes and rows/s vs the raw pipeline ----------------------------------------
# Raw pipeline: plain copies of the small hub's resource table (no triggers), WAL.
sqlite3 "$T/raw-src.db" "PRAGMA journal_mode = WAL" \
    "$(sqlite3 "$T/small/hub.db" "SELECT sql FROM sqlite_schema WHERE name = 'resource'")" \
    "ATTACH '$T/small/hub.db' AS h" "INSERT INTO resource SELECT * FROM h.resource" >/dev/null
site_new "$T/small" pa
site_new "$T/small" pb
rawt=() rawz=() ourt=() ourw=() rssb=()
idle_rss=$( { /usr/bin/time -f '%M' "$BIN/empact" sync "$T/pa.db" >/dev/null; } 2>&1 | tail -n 1)
for r in $(seq 1 "$RUNS"); do
    cp "$T/raw-src.db" "$T/raw-dst.db"
    cp "$T/raw-src.db" "$T/raw-run.db"
    out=$("$RAWPIPE" "$T/raw-run.db" "$T/raw-dst.db" "$BULK" "raw$r-")
    rawt+=("$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")")
    rawz+=("$(sed -n 's/.*zstd=\([0-9]*\).*/\1/p' <<<"$out")")
    rm -f "$T/raw-dst.db"* "$T/raw-run.db"*
    add_rows "$T/pa.db" "$BULK" "bulk$r-"
    t0=$(now)
    /usr/bin/time -f '%M' -o "$T/rss" "$BIN/empact" sync "$T/pa.db" --log-format json >/dev/null 2>"$T/sync.json"
    "$BIN/empact" sync "$T/pb.db" >/dev/null
    t1=$(now)
    ourt+=("$(echo "$t1 - $t0" | bc -l)")
    ourw+=("$(perl -MJSON::PP -ne 'print decode_json($_)->{bytes_sent}' "$T/sync.json")")
    rssb+=("$(tail -n 1 "$T/rss")")
done
read -r rzm _ <<<"$(stats "${rawz[@]}")"
read -r owm owmin <<<"$(stats "${ourw[@]}")"
rt=$(ratio "$owm" "$rzm")
le "$rt" 1.1 && v=PASS || v=MISS
row "wire bytes of a $BULK-row push vs zstd -3 of the raw changeset" "≤ 1.1×" \
    "$rzm B" "$owm B (min $owmin)" "$rt" "$v"
read -r rtm rtmin <<<"$(stats "${rawt[@]}")"
read -r otm otmin <<<"$(stats "${ourt[@]}")"
rawrate=$(echo "$BULK / $rtm" | bc -l)
ourrate=$(echo "$BULK / $otm" | bc -l)
rt=$(ratio "$ourrate" "$rawrate")
ge "$rt" 0.7 && v=PASS || v=MISS
row "rows/s of a $BULK-row sync (push, hub merge + git, pull) vs the raw pipeline" "≥ 0.7×" \
    "$(printf '%.0f' "$rawrate") rows/s ($(s3 "$rtm") s)" "$(printf '%.0f' "$ourrate") rows/s ($(s3 "$otm") s)" "$rt" "$v"
read -r rsm rsmin <<<"$(stats "${rssb[@]}")"
above=$(( (${rsm%.*} - idle_rss) / 1024 ))
le "$above" 64 && v=PASS || v=MISS
row "peak RSS of empact sync pushing $BULK rows, above an idle sync" "≤ 64 MiB" \
    "$((idle_rss / 1024)) MiB idle" "$(( ${rsm%.*} / 1024 )) MiB" "+$above MiB" "$v"

# ---- the hub under load: many sites at once, each sync a new TLS connection --------------------
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# the anonymous part (heap and stacks; the rest is pack files libgit2 maps)
anon_mib() { awk '/^RssAnon:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
"$BIN/empact-hub" init "$T/load" >/dev/null
hub_start "$T/load" --max-per-ip 256
LPID=$HUBPID
say "enrolling and joining $LOAD_SITES load sites"
for i in $(seq 1 "$LOAD_SITES"); do site_new "$T/load" "l$i"; done
rss0=$(rss_mib "$LPID")
"$LOAD" --hold 6 "$T"/l*.db >"$T/hold.out" &
hp=$!
sleep 4
rss_held=$(rss_mib "$LPID")
wait "$hp" || true
held=$(sed -n 's/^held=\([0-9]*\).*/\1/p' "$T/hold.out")
le "$rss_held" 128 && [ "${held:-0}" -eq "$LOAD_SITES" ] && v=PASS || v=MISS
row "hub RSS with $LOAD_SITES open site connections (TLS + HELLO, idle)" "≤ 128 MiB" \
    "$rss0 MiB with none" "$rss_held MiB (${held:-0} held)" "$rss_held MiB" "$v"
# Three runs of LOAD_SITES simulated sites, each a thread of tests/bench/load.c:
#   full:  each sync is a whole `empact sync` (new TLS connection, push, pull
#          applied and proved): the clients' own work is measured with the hub's;
#   wire:  each sync speaks the protocol without the site's bookkeeping (new TLS
#          connection with the site's certificate, PUSH of a real changeset,
#          PULL of every version since, BYE), closed loop: the hub's capacity;
#   rate:  the same at 250 syncs/s offered (open loop), latency counted from
#          when each sync was due: the target's p99.
# The hub's CPU time (utime + stime, in clock ticks) is read around each run.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# load_run NAME ARGS...: runs the load tool; sets syncs errs lrows persec p50 p95 p99 hubms
load_run() {
    local name=$1 c1 c2 n
    shift
    c1=$(cpu_ticks "$LPID")
    "$LOAD" "$@" "$LOAD_SECONDS" 10 "$T"/l*.db >"$T/load-$name.out" || true
    c2=$(cpu_ticks "$LPID")
    read -r syncs errs lrows persec p50 p95 p99 <<<"$(sed -n 's/^syncs=\([0-9]*\) errors=\([0-9]*\) rows=\([0-9]*\) seconds=[0-9.]* per_s=\([0-9.]*\) p50_ms=\([0-9.]*\) p95_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \2 \3 \4 \5 \6 \7/p' "$T/load-$name.out")"
    n=${syncs:-0}; [ "$n" -gt 0 ] || n=1
    hubms=$(echo "($c2 - $c1) * 1000 / $(getconf CLK_TCK) / $n" | bc -l | awk '{printf "%.1f", $1}')
    allrows=$((allrows + ${lrows:-0}))
    allerrs=$((allerrs + ${errs:-1}))
    grep '^error ' "$T/load-$name.out" | sed 's/^error [^:]*: [0-9]* failed, first: //' | sort | uniq -c | sort -rn | head -n 5 >&2 || true
}
allrows=0 allerrs=0
rss1=$(rss_mib "$LPID") anon1=$(anon_mib "$LPID")
say "load: $LOAD_SITES sites x $LOAD_SECONDS s, full syncs"
load_run full
# a failed full sync leaves its rows pending: one more sync per site sends them
for i in $(seq 1 "$LOAD_SITES"); do "$BIN/empact" sync "$T/l$i.db" >/dev/null 2>>"$T/final.err" || true; done
f_syncs=${syncs:-0} f_persec=${persec:-0} f_p99=${p99:-?} f_hubms=$hubms
say "load: $LOAD_SITES sites x $LOAD_SECONDS s, protocol-level syncs, closed loop"
load_run wire --wire
w_syncs=${syncs:-0} w_persec=${persec:-0} w_p50=${p50:-?} w_p99=${p99:-?} w_hubms=$hubms
say "load: $LOAD_SITES sites x $LOAD_SECONDS s, protocol-level syncs, 250/s offered"
load_run rate --wire --rate 250
# the rate served: syncs over the schedule's window (the tool's own seconds
# also hold starting 100 threads and the last syncs' tails, so even a hub
# that never lags shows 250 x S / (S + ~0.4) there)
served=$(echo "${syncs:-0} / $LOAD_SECONDS" | bc -l | awk '{printf "%.1f", $1}')
rss2=$(rss_mib "$LPID") anon2=$(anon_mib "$LPID")
onhub=$(sqlite3 "$T/load/hub.db" "SELECT count(*) FROM resource WHERE id LIKE 'load-%'")
lost=$((allrows - onhub))
ge "$w_persec" 250 && ge "$served" 245 && le "${p99:-1e9}" 100 && [ "$allerrs" -eq 0 ] &&
    [ "$lost" -eq 0 ] && v=PASS || v=MISS
row "hub: $LOAD_SITES sites x $LOAD_SECONDS s, 1-10-row pushes, each sync a new TLS connection" \
    "≥ 250/s, p99 ≤ 100 ms" "-" \
    "most: $w_syncs syncs, p50/p99 $w_p50/$w_p99 ms (closed loop, $LOAD_SITES in flight), hub CPU $w_hubms ms per sync; at 250/s offered: ${served}/s served, p50/p95/p99 ${p50:-?}/${p95:-?}/${p99:-?} ms from due; $allerrs errors, $lost rows lost in all three runs; hub RSS $rss1 → $rss2 MiB (anonymous $anon1 → $anon2)" \
    "${w_persec}/s; p99 ${p99:-?} ms at 250/s" "$v"
row "hub under load with full clients (their own work on the same 2 cores)" "(shown)" "-" \
    "$f_syncs syncs, p99 $f_p99 ms, hub CPU $f_hubms ms per sync" "${f_persec}/s" "-"

# ---- small syncs with and without a dictionary trained from the hub's rows ---------------------
# One site makes SMALL_SYNCS small syncs (1-10 rows: inserts and updates in
# turn) before the hub has a dictionary, then the same shape of edits after
# `empact-hub train-dict` (the sync that fetches it is not counted).  "On the
# wire" is the protocol's frames both ways (frame_bytes_*); the socket bytes,
# TLS handshake included, are shown beside them.
"$BIN/empact-hub" init "$T/dict" >/dev/null
hub_start "$T/dict"
site_new "$T/dict" dseed
add_rows "$T/dseed.db" 2000 "d-"
sync_json "$T/dseed.db"
site_new "$T/dict" dsite
SMALL_SYNCS=${BENCH_SMALL_SYNCS:-20}
# small_syncs TAG: SMALL_SYNCS syncs of dsite; frame and socket bytes per sync
# in the arrays frames and sockets.
small_syncs() {
    local i n
    frames=() sockets=()
    for i in $(seq 1 "$SMALL_SYNCS"); do
        n=$((1 + (i - 1) % 10))
        if [ $((i % 2)) -eq 1 ]; then
            add_rows "$T/dsite.db" "$n" "$1$i-"
        else
            sqlite3 "$T/dsite.db" "UPDATE resource SET summary = 'Revised summary $1 $i: ' || hex(randomblob(8)),
                updated_at = '2026-12-02T10:00:00Z' WHERE id IN (SELECT id FROM resource ORDER BY random() LIMIT $n)"
        fi
        sync_json "$T/dsite.db"
        frames+=("$(perl -MJSON::PP -ne '$j = decode_json($_); print $j->{frame_bytes_sent} + $j->{frame_bytes_received}' "$T/sync.json")")
        sockets+=("$(perl -MJSON::PP -ne '$j = decode_json($_); print $j->{bytes_sent} + $j->{bytes_received}' "$T/sync.json")")
    done
}
small_syncs plain
read -r fpm fpmin <<<"$(stats "${frames[@]}")"
read -r spm _ <<<"$(stats "${sockets[@]}")"
"$BIN/empact-hub" train-dict "$T/dict" >"$T/train.out"
say "$(cat "$T/train.out")"
sync_json "$T/dsite.db" # fetches the dictionary
small_syncs dict
read -r fdm fdmin <<<"$(stats "${frames[@]}")"
read -r sdm _ <<<"$(stats "${sockets[@]}")"
rt=$(ratio "$fdm" "$fpm")
le "$fdm" 1024 && le "$rt" 1 && v=PASS || v=MISS
row "small syncs (1-10 rows) with a zstd dictionary trained from the hub's rows: frame bytes per sync" \
    "≤ 1 KB, vs without" "$fpm B (min $fpmin; socket $spm B with TLS)" \
    "$fdm B (min $fdmin; socket $sdm B with TLS)" "$rt" "$v"

# ---- results ----------------------------------------------------------------------------------
mkdir -p "$ROOT/bench/results"
{
    echo "# make bench — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)."
    echo "Sizes: big $BIG rows, small $SMALL, bulk $BULK, $CHANGED changed; median (and min) of $RUNS runs."
    echo
    echo "| measure | baseline | EMPaCT Sync | ratio | target | result |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${RESULTS[@]}"
} >"$ROOT/bench/results/latest.md"
cp "$ROOT/bench/results/latest.md" "$ROOT/bench/results/$(date -u +%Y-%m-%d)$([ "${BENCH_QUICK:-0}" = 1 ] && echo -quick).md"
say "results in bench/results/latest.md"
