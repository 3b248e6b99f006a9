-- Orders: each taken once per (channel, external id), each delivery id remembered, the saga's
-- state kept as the core's order record (JSON) with a version for optimistic updates.

CREATE TABLE orders (
    id            TEXT    PRIMARY KEY,
    channel       TEXT    NOT NULL,
    external_id   TEXT    NOT NULL,
    content_hash  TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    until         BIGINT,
    state         TEXT    NOT NULL,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (channel, external_id)
);
CREATE INDEX orders_status ON orders (status, updated_at);
CREATE INDEX orders_due ON orders (until) WHERE until IS NOT NULL;

CREATE TABLE order_deliveries (
    delivery_id   TEXT    PRIMARY KEY,
    order_id      TEXT    NOT NULL,
    received_at   BIGINT NOT NULL
);
