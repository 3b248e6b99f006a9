-- The catalog: items and kit components, locations, channels, listings.

CREATE TABLE items (
    sku             TEXT    PRIMARY KEY,
    description     TEXT,
    unit            TEXT    NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE kit_components (
    kit_sku         TEXT    NOT NULL,
    component_sku   TEXT    NOT NULL,
    quantity        BIGINT NOT NULL,
    position        BIGINT NOT NULL,
    PRIMARY KEY (kit_sku, component_sku)
);
CREATE INDEX kit_components_component ON kit_components (component_sku);

CREATE TABLE locations (
    id              TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    authority       TEXT    NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE channels (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    policy          TEXT    NOT NULL,
    increase_hold_ms BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE channel_locations (
    channel         TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    priority        BIGINT NOT NULL,
    PRIMARY KEY (channel, location)
);
CREATE INDEX channel_locations_location ON channel_locations (location);

CREATE TABLE listings (
    channel         TEXT    NOT NULL,
    channel_sku     TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (channel, channel_sku)
);
CREATE INDEX listings_sku ON listings (sku);
