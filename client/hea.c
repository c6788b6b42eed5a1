/*
 * hea.c - impact partners, members and Health Equity Analyses (hea.h).
 *
 * An HEA moves through five steps: intake and scoping, preparation, the
 * engagement with members, the validated report, the partner's feedback.
 * `hea advance` finishes the step in progress on a date; `--skip` or `--to`
 * passes over steps, and only with `--because`: a step is never skipped
 * silently.  Dates never run backwards along an HEA.
 */
#include "hea.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "replica.h"
#include "sitecmd.h"
#include "tabular.h"

const char *const hea_steps[] = {"intake", "preparation", "engagement", "report", "feedback", NULL};
#define NSTEPS 5

static const char *const levels[] = {"hospital", "provincial-regional", "national", NULL};

static const char usage_group[] =
    "usage: empact partner add|list ...\n"
    "       empact member add|list ...\n"
    "       empact hea add|advance|partner|member|decision|pay|list|show ...\n"
    "\n"
    "The site's confidential Health Equity Analysis work, kept in SITE.db and never\n"
    "sent to the hub.  Run 'empact GROUP COMMAND --help' for each command.\n";

static const char usage_partner_add[] =
    "usage: empact partner add SITE.db --organisation ORG --level LEVEL\n"
    "                          [--contact TEXT] [--notes TEXT]\n"
    "\n"
    "Records an impact partner: a person at a decision-making organisation.\n"
    "LEVEL is hospital, provincial-regional or national.  The contact stays at the\n"
    "site.  Prints the new partner's id.\n"
    "Exit codes: 0 added, 64 usage, 65 bad value, 74 i/o.\n";

static const char usage_partner_list[] =
    "usage: empact partner list SITE.db [--json]\n"
    "\n"
    "Lists the impact partners with the number of HEAs each works with.\n";

static const char usage_member_add[] =
    "usage: empact member add SITE.db --name NAME [--contact TEXT] [--notes TEXT]\n"
    "\n"
    "Records a community member with lived experience.  Prints the new id.\n"
    "Exit codes: 0 added, 64 usage, 65 bad value, 74 i/o.\n";

static const char usage_member_list[] =
    "usage: empact member list SITE.db [--json]\n"
    "\n"
    "Lists the members with the number of HEAs each took part in.\n";

static const char usage_hea_add[] =
    "usage: empact hea add SITE.db --title TITLE [--opened DATE] [--notes TEXT]\n"
    "\n"
    "Opens a Health Equity Analysis at its first step, intake and scoping.  DATE is\n"
    "YYYY-MM-DD (default today).  Prints the new HEA's id.\n"
    "Exit codes: 0 opened, 64 usage, 65 bad value, 74 i/o.\n";

static const char usage_hea_advance[] =
    "usage: empact hea advance SITE.db HEA_ID [--on DATE]\n"
    "       empact hea advance SITE.db HEA_ID --skip --because WHY [--on DATE]\n"
    "       empact hea advance SITE.db HEA_ID --to STEP --because WHY [--on DATE]\n"
    "\n"
    "Finishes the HEA's step in progress on DATE (default today) and moves to the\n"
    "next: intake, preparation, engagement, report, feedback, then closed.\n"
    "--skip passes over the step in progress; --to STEP passes over every step\n"
    "before STEP (STEP may be 'closed').  Skipping needs --because: the reason is\n"
    "kept with each skipped step.  DATE may not be before the HEA's last date.\n"
    "Exit codes: 0 advanced, 64 usage, 65 bad value or HEA closed, 74 i/o.\n";

static const char usage_hea_partner[] =
    "usage: empact hea partner SITE.db HEA_ID PARTNER_ID\n"
    "\n"
    "Records that the impact partner works with this HEA (an impact partnership).\n";

static const char usage_hea_member[] = "usage: empact hea member SITE.db HEA_ID MEMBER_ID\n"
                                       "\n"
                                       "Records that the member took part in this HEA.\n";

static const char usage_hea_decision[] =
    "usage: empact hea decision SITE.db HEA_ID --partner PARTNER_ID --what TEXT\n"
    "                           [--on DATE]\n"
    "\n"
    "Records a decision the HEA informed, taken by the partner (whose level,\n"
    "hospital, provincial-regional or national, is the decision's).  The partner\n"
    "is linked to the HEA if it was not.  Prints the decision's id.\n";

static const char usage_hea_pay[] =
    "usage: empact hea pay SITE.db HEA_ID --member MEMBER_ID --amount DOLLARS\n"
    "                      [--on DATE] [--notes TEXT]\n"
    "\n"
    "Records compensation paid to a member for this HEA; DOLLARS like 150 or\n"
    "150.50.  The member is linked to the HEA if they were not.\n";

static const char usage_hea_list[] =
    "usage: empact hea list SITE.db [--step STEP] [--json]\n"
    "\n"
    "Lists the HEAs (optionally those at STEP, or 'closed') with their step and\n"
    "their numbers of partners, members and decisions informed.\n";

static const char usage_hea_show[] =
    "usage: empact hea show SITE.db HEA_ID [--json]\n"
    "\n"
    "Shows one HEA: each step's date (or why it was skipped), its partners, the\n"
    "decisions it informed, its members and the compensation paid.\n";

/* ---- partners and members ------------------------------------------------ */

static int partner_add(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *org = NULL, *level = NULL, *contact = NULL, *notes = NULL;
    const struct cli_opt opts[] = {{"organisation", 'o', 1, &org},
                                   {"level", 'l', 1, &level},
                                   {"contact", 'c', 1, &contact},
                                   {"notes", 'n', 1, &notes},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact", usage_partner_add, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (org == NULL || level == NULL)
        return cli_usage_error("empact", usage_partner_add, "needs --organisation and --level");
    if (org[0] == '\0')
        return sc_bad("--organisation is empty");
    if (sc_index_of(levels, level) < 0)
        return sc_bad("--level '%s' is not one of hospital, provincial-regional, national", level);
    if ((rc = sc_run(sc_prepare(db, &e,
                                "INSERT INTO impact_partner (organisation, level, contact, notes) "
                                "VALUES (?, ?, ?, ?)",
                                "tttt", org, level, contact, notes),
                     &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("partner %lld: %s (%s)\n", (long long)sqlite3_last_insert_rowid(db), org, level);
    return EXIT_OK;
}

static int member_add(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *name = NULL, *contact = NULL, *notes = NULL;
    const struct cli_opt opts[] = {{"name", 'n', 1, &name},
                                   {"contact", 'c', 1, &contact},
                                   {"notes", 0, 1, &notes},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact", usage_member_add, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (name == NULL)
        return cli_usage_error("empact", usage_member_add, "needs --name");
    if (name[0] == '\0')
        return sc_bad("--name is empty");
    if ((rc =
             sc_run(sc_prepare(db, &e, "INSERT INTO member (name, contact, notes) VALUES (?, ?, ?)",
                               "ttt", name, contact, notes),
                    &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("member %lld: %s\n", (long long)sqlite3_last_insert_rowid(db), name);
    return EXIT_OK;
}

/* `partner list` and `member list`: only --json, one statement. */
static int simple_list(int argc, char **argv, struct sc_ctx *c, const char *usage, const char *sql,
                       const char *empty)
{
    sqlite3 *db;
    const char *json = NULL;
    const struct cli_opt opts[] = {{"json", 'j', 0, &json}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact", usage, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    rc = sc_print_query(sc_prepare(db, &e, sql, ""), json != NULL, empty, &e);
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

static int partner_list(int argc, char **argv, struct sc_ctx *c)
{
    return simple_list(argc, argv, c, usage_partner_list,
                       "SELECT p.id, p.organisation, p.level, p.contact, (SELECT count(*) FROM "
                       "hea_partner h WHERE h.partner_id = p.id) AS heas FROM impact_partner p "
                       "ORDER BY p.id",
                       "no impact partners yet (add one with 'empact partner add')");
}

static int member_list(int argc, char **argv, struct sc_ctx *c)
{
    return simple_list(argc, argv, c, usage_member_list,
                       "SELECT m.id, m.name, m.contact, (SELECT count(*) FROM hea_member h "
                       "WHERE h.member_id = m.id) AS heas FROM member m ORDER BY m.id",
                       "no members yet (add one with 'empact member add')");
}

/* ---- HEAs ---------------------------------------------------------------- */

static int hea_add(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *title = NULL, *opened = NULL, *notes = NULL;
    const struct cli_opt opts[] = {{"title", 't', 1, &title},
                                   {"opened", 0, 1, &opened},
                                   {"notes", 'n', 1, &notes},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    char date[11];
    int rc = cli_parse(argc, argv, "empact", usage_hea_add, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (title == NULL)
        return cli_usage_error("empact", usage_hea_add, "needs --title");
    if (title[0] == '\0')
        return sc_bad("--title is empty");
    if (sc_date_arg(db, "--opened", opened, date) != 0)
        return EXIT_DATA;
    if ((rc =
             sc_run(sc_prepare(db, &e, "INSERT INTO hea (title, opened_on, notes) VALUES (?, ?, ?)",
                               "ttt", title, date, notes),
                    &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("hea %lld opened on %s: %s (step: intake)\n", (long long)sqlite3_last_insert_rowid(db),
           date, title);
    return EXIT_OK;
}

static int hea_advance(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *on = NULL, *to = NULL, *skip = NULL, *because = NULL;
    const struct cli_opt opts[] = {{"on", 0, 1, &on},
                                   {"to", 0, 1, &to},
                                   {"skip", 0, 0, &skip},
                                   {"because", 0, 1, &because},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    sqlite3_int64 id;
    char step[32], last[16], date[11];
    int rc = cli_parse(argc, argv, "empact", usage_hea_advance, opts, 2, 2), cur, target;

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (to != NULL && skip != NULL)
        return cli_usage_error("empact", usage_hea_advance, "give --skip or --to, not both");
    if ((to != NULL || skip != NULL) && (because == NULL || because[0] == '\0'))
        return cli_usage_error("empact", usage_hea_advance,
                               "a step is skipped only with --because WHY");
    if (to == NULL && skip == NULL && because != NULL)
        return cli_usage_error("empact", usage_hea_advance,
                               "--because goes with --skip or --to (nothing is skipped)");
    if (sc_need_row(db, "hea", "HEA", argv[optind + 1], &id) != 0 ||
        sc_date_arg(db, "--on", on, date) != 0)
        return EXIT_DATA;
    if ((rc = sc_begin(db, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    sc_first_text(sc_prepare(db, &e, "SELECT step FROM hea WHERE id = ?", "i", id), step,
                  sizeof(step));
    sc_first_text(
        sc_prepare(db, &e,
                   "SELECT max(opened_on, ifnull((SELECT max(done_on) FROM hea_step WHERE "
                   "hea_id = ?1), '')) FROM hea WHERE id = ?1",
                   "i", id),
        last, sizeof(last));
    if ((cur = sc_index_of(hea_steps, step)) < 0) {
        sc_end(db, SYNC_EDATA, &e);
        return sc_bad("HEA %lld is closed: all five steps are behind it", (long long)id);
    }
    if (strcmp(date, last) < 0) {
        sc_end(db, SYNC_EDATA, &e);
        return sc_bad("%s is before this HEA's last date, %s", date, last);
    }
    target = cur + 1;
    if (to != NULL) {
        target = strcmp(to, "closed") == 0 ? NSTEPS : sc_index_of(hea_steps, to);
        if (target <= cur) {
            sc_end(db, SYNC_EDATA, &e);
            return sc_bad("--to '%s' is not a step after %s (steps: intake, preparation, "
                          "engagement, report, feedback, closed)",
                          to, step);
        }
    }
    for (int k = cur; rc == SYNC_OK && k < target; k++)
        rc = sc_run(sc_prepare(db, &e,
                               "INSERT INTO hea_step (hea_id, step, done_on, skipped_because) "
                               "VALUES (?, ?, ?, ?)",
                               "ittt", id, hea_steps[k], date, because),
                    &e);
    if (rc == SYNC_OK)
        rc = sc_run(sc_prepare(db, &e, "UPDATE hea SET step = ? WHERE id = ?", "ti",
                               target < NSTEPS ? hea_steps[target] : "closed", id),
                    &e);
    if ((rc = sc_end(db, rc, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    if (because != NULL)
        printf("hea %lld: skipped %d step%s from %s on %s (%s); now at %s\n", (long long)id,
               target - cur, target - cur == 1 ? "" : "s", step, date, because,
               target < NSTEPS ? hea_steps[target] : "closed");
    else
        printf("hea %lld: %s done on %s; now at %s\n", (long long)id, step, date,
               target < NSTEPS ? hea_steps[target] : "closed");
    return EXIT_OK;
}

/* `hea partner` and `hea member`: link an existing row to an HEA. */
static int hea_link(int argc, char **argv, struct sc_ctx *c, const char *usage, const char *table,
                    const char *what, const char *sql)
{
    sqlite3 *db;
    const struct cli_opt opts[] = {{NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    sqlite3_int64 id, other;
    int rc = cli_parse(argc, argv, "empact", usage, opts, 3, 3);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (sc_need_row(db, "hea", "HEA", argv[optind + 1], &id) != 0 ||
        sc_need_row(db, table, what, argv[optind + 2], &other) != 0)
        return EXIT_DATA;
    if ((rc = sc_run(sc_prepare(db, &e, sql, "ii", id, other), &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("hea %lld: %s %lld %s\n", (long long)id, what, (long long)other,
           sqlite3_changes(db) ? "linked" : "was already linked");
    return EXIT_OK;
}

static int hea_partner(int argc, char **argv, struct sc_ctx *c)
{
    return hea_link(argc, argv, c, usage_hea_partner, "impact_partner", "partner",
                    "INSERT OR IGNORE INTO hea_partner (hea_id, partner_id) VALUES (?, ?)");
}

static int hea_member(int argc, char **argv, struct sc_ctx *c)
{
    return hea_link(argc, argv, c, usage_hea_member, "member", "member",
                    "INSERT OR IGNORE INTO hea_member (hea_id, member_id) VALUES (?, ?)");
}

static int hea_decision(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *partner = NULL, *what = NULL, *on = NULL;
    const struct cli_opt opts[] = {{"partner", 'p', 1, &partner},
                                   {"what", 'w', 1, &what},
                                   {"on", 0, 1, &on},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    sqlite3_int64 id, pid, did = 0;
    char date[11];
    int rc = cli_parse(argc, argv, "empact", usage_hea_decision, opts, 2, 2);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (partner == NULL || what == NULL)
        return cli_usage_error("empact", usage_hea_decision, "needs --partner and --what");
    if (what[0] == '\0')
        return sc_bad("--what is empty: say what was decided");
    if (sc_need_row(db, "hea", "HEA", argv[optind + 1], &id) != 0 ||
        sc_need_row(db, "impact_partner", "partner", partner, &pid) != 0 ||
        sc_date_arg(db, "--on", on, date) != 0)
        return EXIT_DATA;
    if ((rc = sc_begin(db, &e)) == SYNC_OK &&
        (rc = sc_run(
             sc_prepare(db, &e,
                        "INSERT INTO hea_decision (hea_id, partner_id, decided_on, description) "
                        "VALUES (?, ?, ?, ?)",
                        "iitt", id, pid, date, what),
             &e)) == SYNC_OK) {
        did = sqlite3_last_insert_rowid(db);
        rc = sc_run(
            sc_prepare(db, &e,
                       "INSERT OR IGNORE INTO hea_partner (hea_id, partner_id) VALUES (?, ?)", "ii",
                       id, pid),
            &e);
    }
    if ((rc = sc_end(db, rc, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("hea %lld: decision %lld by partner %lld on %s\n", (long long)id, (long long)did,
           (long long)pid, date);
    return EXIT_OK;
}

/* "150", "150.5", "150.50" -> cents; -1 for anything else, zero, or over a
 * million dollars. */
static long long parse_cents(const char *s)
{
    long long whole = 0, cents = 0;
    int digits = 0, frac = 0;

    for (; *s >= '0' && *s <= '9'; s++, digits++)
        if ((whole = whole * 10 + (*s - '0')) > 1000000)
            return -1;
    if (digits == 0)
        return -1;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9' && frac < 2; s++, frac++)
            cents = cents * 10 + (*s - '0');
        if (frac == 0)
            return -1;
        if (frac == 1)
            cents *= 10;
    }
    if (*s != '\0' || whole * 100 + cents == 0)
        return -1;
    return whole * 100 + cents;
}

static int hea_pay(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *member = NULL, *amount = NULL, *on = NULL, *notes = NULL;
    const struct cli_opt opts[] = {{"member", 'm', 1, &member},
                                   {"amount", 'a', 1, &amount},
                                   {"on", 0, 1, &on},
                                   {"notes", 'n', 1, &notes},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    sqlite3_int64 id, mid;
    long long cents;
    char date[11];
    int rc = cli_parse(argc, argv, "empact", usage_hea_pay, opts, 2, 2);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (member == NULL || amount == NULL)
        return cli_usage_error("empact", usage_hea_pay, "needs --member and --amount");
    if ((cents = parse_cents(amount)) < 0)
        return sc_bad("--amount '%s' is not an amount of dollars above 0 (like 150 or 150.50, at "
                      "most 1000000)",
                      amount);
    if (sc_need_row(db, "hea", "HEA", argv[optind + 1], &id) != 0 ||
        sc_need_row(db, "member", "member", member, &mid) != 0 ||
        sc_date_arg(db, "--on", on, date) != 0)
        return EXIT_DATA;
    if ((rc = sc_begin(db, &e)) == SYNC_OK &&
        (rc = sc_run(
             sc_prepare(db, &e,
                        "INSERT INTO compensation (hea_id, member_id, amount_cents, paid_on, "
                        "notes) VALUES (?, ?, ?, ?, ?)",
                        "iiitt", id, mid, (sqlite3_int64)cents, date, notes),
             &e)) == SYNC_OK)
        rc = sc_run(sc_prepare(db, &e,
                               "INSERT OR IGNORE INTO hea_member (hea_id, member_id) VALUES (?, ?)",
                               "ii", id, mid),
                    &e);
    if ((rc = sc_end(db, rc, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("hea %lld: paid member %lld $%lld.%02lld on %s\n", (long long)id, (long long)mid,
           cents / 100, cents % 100, date);
    return EXIT_OK;
}

static int hea_list(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *json = NULL, *step = NULL;
    const struct cli_opt opts[] = {
        {"json", 'j', 0, &json}, {"step", 0, 1, &step}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact", usage_hea_list, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (step != NULL && sc_index_of(hea_steps, step) < 0 && strcmp(step, "closed") != 0)
        return sc_bad("--step '%s' is not one of intake, preparation, engagement, report, "
                      "feedback, closed",
                      step);
    rc = sc_print_query(
        sc_prepare(db, &e,
                   "SELECT h.id, h.title, h.step, h.opened_on AS opened, "
                   "(SELECT count(*) FROM hea_partner x WHERE x.hea_id = h.id) AS "
                   "partners, (SELECT count(*) FROM hea_member x WHERE x.hea_id = h.id) "
                   "AS members, (SELECT count(*) FROM hea_decision x WHERE x.hea_id = "
                   "h.id) AS decisions FROM hea h WHERE ?1 IS NULL OR h.step = ?1 "
                   "ORDER BY h.id",
                   "t", step),
        json != NULL, "no HEAs", &e);
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

/* The parts of `hea show`, each one query on ?1 = the HEA's id. */
static const struct {
    const char *name, *sql;
} show_parts[] = {
    {"hea", "SELECT id, title, step, opened_on AS opened, notes FROM hea WHERE id = ?1"},
    {"steps", "WITH s(n, step) AS (VALUES (1, 'intake'), (2, 'preparation'), (3, 'engagement'), "
              "(4, 'report'), (5, 'feedback')) SELECT s.step, CASE WHEN x.skipped_because IS "
              "NOT NULL THEN 'skipped' WHEN x.done_on IS NOT NULL THEN 'done' WHEN h.step = "
              "s.step THEN 'in progress' ELSE 'to do' END AS status, x.done_on AS \"on\", "
              "x.skipped_because AS why FROM s JOIN hea h ON h.id = ?1 LEFT JOIN hea_step x ON "
              "x.hea_id = h.id AND x.step = s.step ORDER BY s.n"},
    {"partners", "SELECT p.id, p.organisation, p.level, p.contact FROM hea_partner x JOIN "
                 "impact_partner p ON p.id = x.partner_id WHERE x.hea_id = ?1 ORDER BY p.id"},
    {"decisions", "SELECT d.id, d.decided_on AS \"on\", p.level, p.organisation, d.description "
                  "FROM hea_decision d JOIN impact_partner p ON p.id = d.partner_id WHERE "
                  "d.hea_id = ?1 ORDER BY d.decided_on, d.id"},
    {"members", "SELECT m.id, m.name, (SELECT printf('%.2f', sum(c.amount_cents) / 100.0) FROM "
                "compensation c WHERE c.hea_id = ?1 AND c.member_id = m.id) AS paid FROM "
                "hea_member x JOIN member m ON m.id = x.member_id WHERE x.hea_id = ?1 ORDER BY "
                "m.id"},
    {"payments", "SELECT c.id, c.paid_on AS \"on\", c.member_id AS member, m.name, printf('%.2f', "
                 "c.amount_cents / 100.0) AS amount FROM compensation c JOIN member m ON m.id = "
                 "c.member_id WHERE c.hea_id = ?1 ORDER BY c.paid_on, c.id"},
};

static int hea_show(int argc, char **argv, struct sc_ctx *c)
{
    sqlite3 *db;
    const char *json = NULL;
    const struct cli_opt opts[] = {{"json", 'j', 0, &json}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    cJSON *all = NULL;
    sqlite3_int64 id;
    int rc = cli_parse(argc, argv, "empact", usage_hea_show, opts, 2, 2);

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    db = c->db;
    if (sc_need_row(db, "hea", "HEA", argv[optind + 1], &id) != 0)
        return EXIT_DATA;
    if (json != NULL && (all = cJSON_CreateObject()) == NULL)
        return sc_fail(errctx_set(&e, SYNC_ENOMEM, "out of memory"), &e);
    rc = SYNC_OK;
    for (size_t i = 0; rc == SYNC_OK && i < sizeof(show_parts) / sizeof(show_parts[0]); i++) {
        sqlite3_stmt *st = sc_prepare(db, &e, show_parts[i].sql, "i", id);
        cJSON *rows = st ? tabular_rows(st, &e) : NULL;
        if (rows == NULL) {
            rc = e.code;
        } else if (all != NULL) {
            cJSON *item = i == 0 ? cJSON_DetachItemFromArray(rows, 0) : rows;
            cJSON_AddItemToObject(all, show_parts[i].name, item);
            if (i == 0)
                cJSON_Delete(rows);
            rows = NULL;
        } else {
            printf("%s%s:\n", i ? "\n" : "", show_parts[i].name);
            tabular_print(stdout, st, rows, "  (none)");
        }
        cJSON_Delete(rows);
        sqlite3_finalize(st);
    }
    if (rc == SYNC_OK && all != NULL) {
        char *text = cJSON_Print(all);
        if (text == NULL)
            rc = errctx_set(&e, SYNC_ENOMEM, "out of memory");
        else
            printf("%s\n", text);
        free(text);
    }
    cJSON_Delete(all);
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct sc_command commands[] = {
    {"partner", "add", partner_add},   {"partner", "list", partner_list},
    {"member", "add", member_add},     {"member", "list", member_list},
    {"hea", "add", hea_add},           {"hea", "advance", hea_advance},
    {"hea", "partner", hea_partner},   {"hea", "member", hea_member},
    {"hea", "decision", hea_decision}, {"hea", "pay", hea_pay},
    {"hea", "list", hea_list},         {"hea", "show", hea_show},
};

int hea_main(int argc, char **argv, const struct schema *s)
{
    return sc_dispatch(argc, argv, s, commands, sizeof(commands) / sizeof(commands[0]),
                       usage_group);
}
