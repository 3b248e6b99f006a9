-- Returns: sagas in the same shape as orders, each taken once per (channel, RMA number).
CREATE TABLE returns (
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
CREATE INDEX returns_status ON returns (status, updated_at);
CREATE INDEX returns_due ON returns (until) WHERE until IS NOT NULL;

CREATE TABLE return_deliveries (
    delivery_id   TEXT    PRIMARY KEY,
    return_id      TEXT    NOT NULL,
    received_at   BIGINT NOT NULL
);

-- Financial posting: every shipped line and every received return line once (by its key), with
-- its amount in ten-thousandths; a run gathers the lines not yet in a batch per channel,
-- currency and business day into a journal batch, in the same transaction as the batch's
-- erp.journal.post action.
CREATE TABLE posting_lines (
    key           TEXT    PRIMARY KEY,
    channel       TEXT    NOT NULL,
    currency      TEXT    NOT NULL,
    day           TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    units         BIGINT NOT NULL,
    amount        BIGINT NOT NULL,
    batch         TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX posting_lines_open ON posting_lines (channel, currency, day) WHERE batch IS NULL;
CREATE INDEX posting_lines_batch ON posting_lines (batch);

CREATE TABLE posting_batches (
    key           TEXT    PRIMARY KEY,
    channel       TEXT    NOT NULL,
    currency      TEXT    NOT NULL,
    day           TEXT    NOT NULL,
    lines         BIGINT NOT NULL,
    units         BIGINT NOT NULL,
    amount        BIGINT NOT NULL,
    status        TEXT    NOT NULL,
    journal       TEXT,
    action_id     BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX posting_batches_group ON posting_batches (channel, currency, day);
CREATE INDEX posting_batches_status ON posting_batches (status, created_at);
