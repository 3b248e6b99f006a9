-- The inventory ledger: positions per (sku, location), the deltas their latest count does not
-- include, events that were not applied, and what each channel listing shows; the hub's
-- reservations. Positions, deltas and divergences are a projection of the log (rebuilt from
-- it); reservations are not, and a rebuild keeps them.

CREATE TABLE inventory_positions (
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    count_seq       BIGINT,
    count_as_of     BIGINT,
    count_value     BIGINT,
    alloc_seq       BIGINT,
    alloc_as_of     BIGINT,
    alloc_value     BIGINT,
    on_hand         BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (sku, location)
);

CREATE TABLE inventory_deltas (
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    seq             BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    quantity        BIGINT NOT NULL,
    kind            TEXT    NOT NULL,
    PRIMARY KEY (sku, location, seq)
);

CREATE TABLE inventory_divergences (
    seq             BIGINT NOT NULL,
    location        TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    recorded_at     BIGINT NOT NULL,
    PRIMARY KEY (seq, location)
);

CREATE TABLE channel_availability (
    channel         TEXT    NOT NULL,
    channel_sku     TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    available       BIGINT NOT NULL,
    published       BIGINT,
    updated_at      BIGINT NOT NULL,
    published_at    BIGINT,
    PRIMARY KEY (channel, channel_sku)
);
CREATE INDEX channel_availability_sku ON channel_availability (sku);

CREATE TABLE catalog_version (
    id              BIGINT PRIMARY KEY,
    version         BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

-- Open hub reservations, by order, and their totals per position (the row a reservation locks).
CREATE TABLE inventory_reserved (
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    reserved        BIGINT NOT NULL,
    PRIMARY KEY (sku, location)
);

CREATE TABLE inventory_reservations (
    order_id        TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    quantity        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku, location)
);
CREATE INDEX inventory_reservations_position ON inventory_reservations (sku, location);
