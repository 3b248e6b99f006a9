-- API governance: keys (only hashes of their secrets), idempotency records, the audit log.

CREATE TABLE api_keys (
    id              TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    secret_sha256   BLOB    NOT NULL,
    scopes          TEXT    NOT NULL,
    channel         TEXT,
    rate_per_second INTEGER,
    burst           INTEGER,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE idempotency (
    api_key         TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    fingerprint     BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    status          INTEGER,
    content_type    TEXT,
    body            BLOB,
    PRIMARY KEY (api_key, key)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    outcome         TEXT    NOT NULL,
    correlation_id  TEXT,
    detail          TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
