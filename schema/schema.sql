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

-- Confidential HEA work: these tables never leave the site.
CREATE TABLE impact_partner (
    id INTEGER PRIMARY KEY,
    organisation TEXT NOT NULL,
    level TEXT CHECK (level IN ('hospital', 'provincial-regional', 'national')),
    contact TEXT,
    notes TEXT
);
INSERT INTO schema_class VALUES ('impact_partner', 'local');

CREATE TABLE engagement (
    id INTEGER PRIMARY KEY,
    partner_id INTEGER REFERENCES impact_partner(id),
    title TEXT NOT NULL,
    step TEXT NOT NULL DEFAULT 'intake',
    intake_on TEXT,
    preparation_on TEXT,
    engagement_on TEXT,
    report_on TEXT,
    feedback_on TEXT,
    decisions_informed TEXT,
    notes TEXT
);
INSERT INTO schema_class VALUES ('engagement', 'local');

CREATE TABLE member (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    contact TEXT,
    notes TEXT
);
INSERT INTO schema_class VALUES ('member', 'local');

CREATE TABLE compensation (
    id INTEGER PRIMARY KEY,
    engagement_id INTEGER REFERENCES engagement(id),
    member_id INTEGER REFERENCES member(id),
    amount_cents INTEGER NOT NULL,
    paid_on TEXT,
    notes TEXT
);
INSERT INTO schema_class VALUES ('compensation', 'local');
