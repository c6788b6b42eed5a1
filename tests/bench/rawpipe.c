/*
 * rawpipe.c - the baseline of `make bench`: what SQLite's session extension
 * and zstd alone cost for a sync of N rows, with no network, no git, no
 * checks.  This is the ceiling EMPaCT Sync can approach.
 *
 *   rawpipe SRC.db DST.db N PREFIX
 *
 * SRC.db and DST.db hold the same table `resource` (copies of one replica).
 * Inserts N new rows (ids PREFIX000001 ...) into SRC under a session (not
 * timed: a coordinator's typing), then times: taking the changeset,
 * ZSTD_compress at level 3, ZSTD_decompress, and sqlite3changeset_apply into
 * DST in one transaction.  Prints one line:
 *
 *   rows=N changeset=BYTES zstd=BYTES seconds=S rows_per_s=R
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "rawpipe: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
    exit(1);
}

static int on_conflict(void *ctx, int kind, sqlite3_changeset_iter *it)
{
    (void)ctx;
    (void)kind;
    (void)it;
    return SQLITE_CHANGESET_ABORT; /* the copy must take every row as it is */
}

int main(int argc, char **argv)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_session *sess = NULL;
    void *cs = NULL, *z = NULL, *back = NULL;
    int ncs = 0;
    long n;
    size_t zcap, zlen, blen;
    double t0, t1;
    char *sql;

    if (argc != 5 || (n = strtol(argv[3], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: rawpipe SRC.db DST.db N PREFIX\n");
        return 64;
    }
    if (sqlite3_open(argv[1], &src) != SQLITE_OK || sqlite3_open(argv[2], &dst) != SQLITE_OK)
        die("opening the databases", src);
    if (sqlite3session_create(src, "main", &sess) != SQLITE_OK ||
        sqlite3session_attach(sess, "resource") != SQLITE_OK)
        die("starting a session", src);
    sql = sqlite3_mprintf(
        "BEGIN; WITH RECURSIVE k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < %ld) "
        "INSERT INTO resource (id, title, url, summary, kind, oht_block, added_by_site, "
        "updated_at) SELECT printf('%q%%07d', j), 'Resource ' || j, "
        "'https://example.org/r/' || j, 'Summary of resource ' || j || ': ' || "
        "hex(randomblob(16)), 'guide', 1 + j %% 8, 'bench', '2026-12-01T00:00:00Z' FROM k; "
        "COMMIT",
        n, argv[4]);
    if (sql == NULL || sqlite3_exec(src, sql, NULL, NULL, NULL) != SQLITE_OK)
        die("inserting rows", src);
    sqlite3_free(sql);

    t0 = now_s();
    if (sqlite3session_changeset(sess, &ncs, &cs) != SQLITE_OK)
        die("taking the changeset", src);
    zcap = ZSTD_compressBound((size_t)ncs);
    if ((z = malloc(zcap)) == NULL || (back = malloc((size_t)ncs)) == NULL)
        die("out of memory", NULL);
    zlen = ZSTD_compress(z, zcap, cs, (size_t)ncs, 3);
    if (ZSTD_isError(zlen))
        die("compressing", NULL);
    blen = ZSTD_decompress(back, (size_t)ncs, z, zlen);
    if (ZSTD_isError(blen) || blen != (size_t)ncs)
        die("decompressing", NULL);
    if (sqlite3_exec(dst, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3changeset_apply(dst, (int)blen, back, NULL, on_conflict, NULL) != SQLITE_OK ||
        sqlite3_exec(dst, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        die("applying the changeset", dst);
    t1 = now_s();

    printf("rows=%ld changeset=%d zstd=%zu seconds=%.6f rows_per_s=%.0f\n", n, ncs, zlen, t1 - t0,
           (double)n / (t1 - t0));
    sqlite3session_delete(sess);
    sqlite3_free(cs);
    free(z);
    free(back);
    sqlite3_close(src);
    sqlite3_close(dst);
    return 0;
}
