-- The platform foundation: inbox, event log, consumers, source activity, outbox and attempts.
-- Every time is an integer count of microseconds since the Unix epoch (UTC).

CREATE TABLE inbox (
    id              BIGSERIAL PRIMARY KEY,
    source          TEXT    NOT NULL,
    protocol        TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BYTEA    NOT NULL,
    received_at     BIGINT NOT NULL,
    status          TEXT    NOT NULL,
    error           TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    processed_at    BIGINT,
    correlation_id  TEXT
);
CREATE INDEX inbox_status ON inbox (status, id);

CREATE TABLE events (
    seq             BIGINT PRIMARY KEY,
    source          TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    subject         TEXT,
    time            BIGINT,
    datacontenttype TEXT,
    dataschema      TEXT,
    data            TEXT,
    data_base64     BOOLEAN NOT NULL DEFAULT FALSE,
    extensions      TEXT,
    correlation_id  TEXT,
    causation_id    TEXT,
    recorded_at     BIGINT NOT NULL,
    UNIQUE (source, id)
);
CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE consumers (
    name        TEXT    PRIMARY KEY,
    position    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE source_activity (
    source              TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    first_seq           BIGINT NOT NULL,
    last_seq            BIGINT NOT NULL,
    first_recorded_at   BIGINT NOT NULL,
    last_recorded_at    BIGINT NOT NULL,
    PRIMARY KEY (source, kind)
);

CREATE TABLE outbox (
    id                  BIGSERIAL PRIMARY KEY,
    target              TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL,
    coalesce_key        TEXT,
    priority            INTEGER NOT NULL,
    payload             TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    attempts_base       BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    lease_until         BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    last_error          TEXT,
    correlation_id      TEXT,
    causation_id        TEXT,
    superseded_by       BIGINT,
    drop_reason         TEXT,
    UNIQUE (target, idempotency_key)
);
CREATE UNIQUE INDEX outbox_one_pending_per_coalesce_key
    ON outbox (target, coalesce_key) WHERE status = 'pending' AND coalesce_key IS NOT NULL;
CREATE INDEX outbox_due ON outbox (target, status, priority DESC, next_attempt_at, id)
    WHERE status IN ('pending', 'in_flight');
CREATE INDEX outbox_coalesce ON outbox (target, coalesce_key, status) WHERE coalesce_key IS NOT NULL;
CREATE INDEX outbox_open ON outbox (status, target) WHERE status IN ('pending', 'in_flight', 'dead');
CREATE INDEX outbox_finished ON outbox (updated_at) WHERE status IN ('delivered', 'superseded', 'dropped');

CREATE TABLE outbox_attempts (
    outbox_id   BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    PRIMARY KEY (outbox_id, attempt)
);
