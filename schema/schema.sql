-- EMPaCT Sync replicated schema: the single source for hub and sites.
--
-- Every table is declared here with CREATE TABLE and given exactly one class
-- with an INSERT INTO schema_class line (see schema/README.md):
--   shared  on every replica and the hub; any site may write
--   owned   on every replica and the hub; only the site named in site_id writes
--   hub     on every replica and the hub; only the hub (central team) writes
--   local   on one site only; never leaves it
-- Replicated tables (shared, owned, hub) need an explicit PRIMARY KEY whose
-- columns are NOT NULL, and are WITHOUT ROWID so that every replica and the
-- hub identify a row by its key alone (sqldiff then compares by key).  This text is compiled into both binaries; its
-- canonical form is hashed into the schema fingerprint that hub and sites
-- compare on every connection.

-- The shared resource library, catalogued by the Ontario Health Team practice.
CREATE TABLE resource (
    id TEXT NOT NULL PRIMARY KEY,             -- UUID text
    title TEXT NOT NULL,
    url TEXT,
    summary TEXT,
    kind TEXT,                                -- toolkit, report, guide, video, ...
    language TEXT NOT NULL DEFAULT 'en',
    phm_component TEXT CHECK (phm_component IS NULL OR phm_component IN (
        'population identification',
        'segmentation for needs, risks and barriers',
        'co-designing care models and service mix',
        'implementation and reach',
        'monitoring and evaluation')),
    oht_block INTEGER CHECK (oht_block IS NULL OR oht_block BETWEEN 1 AND 8),
    population_group TEXT CHECK (population_group IS NULL OR population_group IN (
        'older adults',
        'people with chronic conditions',
        'mental health and addictions',
        'palliative approach')),
    added_by_site TEXT,
    updated_at TEXT
) WITHOUT ROWID;
INSERT INTO schema_class VALUES ('resource', 'shared');

-- The metric catalogue, kept by the central team.
CREATE TABLE metric (
    code TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    description TEXT,
    suppress_below INTEGER                    -- person counts below this are published suppressed
) WITHOUT ROWID;
INSERT INTO schema_class VALUES ('metric', 'hub');

-- The site registry, kept by the central team.
CREATE TABLE site (
    site_id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    jurisdiction TEXT,
    added_at TEXT
) WITHOUT ROWID;
INSERT INTO schema_class VALUES ('site', 'hub');

-- Aggregated metric values per site and period; each site writes its own rows.
CREATE TABLE metric_value (
    site_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    period TEXT NOT NULL,                     -- e.g. 2026-Q3
    value REAL,                               -- NULL when suppressed
    suppressed INTEGER NOT NULL DEFAULT 0 CHECK (suppressed IN (0, 1)),
    updated_at TEXT,
    PRIMARY KEY (site_id, metric, period)
) WITHOUT ROWID;
INSERT INTO schema_class VALUES ('metric_value', 'owned');

-- Confidential HEA work: these tables never leave the site.  Dates are
-- YYYY-MM-DD text.

-- A person at a decision-making organisation ("impact partner"); an
-- organisation the site works with is an impact partnership.
CREATE TABLE impact_partner (
    id INTEGER PRIMARY KEY,
    organisation TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('hospital', 'provincial-regional', 'national')),
    contact TEXT,
    notes TEXT
);
INSERT INTO schema_class VALUES ('impact_partner', 'local');

-- A Health Equity Analysis.  step is the step in progress, 'closed' once the
-- fifth is done; each finished step has a row in hea_step.
CREATE TABLE hea (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    opened_on TEXT NOT NULL,
    step TEXT NOT NULL DEFAULT 'intake' CHECK (step IN
        ('intake', 'preparation', 'engagement', 'report', 'feedback', 'closed')),
    notes TEXT
);
INSERT INTO schema_class VALUES ('hea', 'local');

-- A finished step: done on a date, or skipped, with the reason why.
CREATE TABLE hea_step (
    hea_id INTEGER NOT NULL REFERENCES hea(id),
    step TEXT NOT NULL CHECK (step IN ('intake', 'preparation', 'engagement', 'report', 'feedback')),
    done_on TEXT NOT NULL,
    skipped_because TEXT,
    PRIMARY KEY (hea_id, step)
);
INSERT INTO schema_class VALUES ('hea_step', 'local');

-- The impact partners an HEA works with.
CREATE TABLE hea_partner (
    hea_id INTEGER NOT NULL REFERENCES hea(id),
    partner_id INTEGER NOT NULL REFERENCES impact_partner(id),
    PRIMARY KEY (hea_id, partner_id)
);
INSERT INTO schema_class VALUES ('hea_partner', 'local');

-- A decision an HEA informed, at the level of the partner who took it.
CREATE TABLE hea_decision (
    id INTEGER PRIMARY KEY,
    hea_id INTEGER NOT NULL REFERENCES hea(id),
    partner_id INTEGER NOT NULL REFERENCES impact_partner(id),
    decided_on TEXT NOT NULL,
    description TEXT NOT NULL
);
INSERT INTO schema_class VALUES ('hea_decision', 'local');

-- A community member with lived experience.
CREATE TABLE member (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    contact TEXT,
    notes TEXT
);
INSERT INTO schema_class VALUES ('member', 'local');

-- The members who took part in an HEA's engagement.
CREATE TABLE hea_member (
    hea_id INTEGER NOT NULL REFERENCES hea(id),
    member_id INTEGER NOT NULL REFERENCES member(id),
    PRIMARY KEY (hea_id, member_id)
);
INSERT INTO schema_class VALUES ('hea_member', 'local');

-- Compensation paid to a member for taking part in an HEA.
CREATE TABLE compensation (
    id INTEGER PRIMARY KEY,
    hea_id INTEGER NOT NULL REFERENCES hea(id),
    member_id INTEGER NOT NULL REFERENCES member(id),
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    paid_on TEXT NOT NULL,
    notes TEXT
);
INSERT INTO schema_class VALUES ('compensation', 'local');
