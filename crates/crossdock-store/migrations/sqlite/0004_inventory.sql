-- The inventory ledger: positions per (sku, location), the deltas their latest count does not
-- include, events that were not applied, and what each channel listing shows; the hub's
-- reservations. Positions, deltas and divergences are a projection of the log (rebuilt from
-- it); reservations are not, and a rebuild keeps them.

CREATE TABLE inventory_positions (
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    count_seq       INTEGER,
    count_as_of     INTEGER,
    count_value     INTEGER,
    alloc_seq       INTEGER,
    alloc_as_of     INTEGER,
    alloc_value     INTEGER,
    on_hand         INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;

CREATE TABLE inventory_deltas (
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    quantity        INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    PRIMARY KEY (sku, location, seq)
) WITHOUT ROWID;

CREATE TABLE inventory_divergences (
    seq             INTEGER NOT NULL,
    location        TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    recorded_at     INTEGER NOT NULL,
    PRIMARY KEY (seq, location)
);

CREATE TABLE channel_availability (
    channel         TEXT    NOT NULL,
    channel_sku     TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    available       INTEGER NOT NULL,
    published       INTEGER,
    updated_at      INTEGER NOT NULL,
    published_at    INTEGER,
    PRIMARY KEY (channel, channel_sku)
) WITHOUT ROWID;
CREATE INDEX channel_availability_sku ON channel_availability (sku);

CREATE TABLE catalog_version (
    id              INTEGER PRIMARY KEY,
    version         INTEGER NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

-- Open hub reservations, by order, and their totals per position (the row a reservation locks).
CREATE TABLE inventory_reserved (
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    reserved        INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;

CREATE TABLE inventory_reservations (
    order_id        TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    quantity        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku, location)
) WITHOUT ROWID;
CREATE INDEX inventory_reservations_position ON inventory_reservations (sku, location);
