-- A listing is due for an update while `due_at` is set, and only then; the due index holds
-- exactly those rows. A listing already due whose value changes again at the same rank keeps
-- its place without touching that index: the index no longer depends on `available`, which
-- every change of stock writes (a catch-up writes hundreds of thousands of listing values).
-- `due_at` is set whenever `queued IS NOT available` held, and cleared otherwise.
CREATE TABLE channel_availability_next (
    channel         TEXT    NOT NULL,
    channel_sku     TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    available       INTEGER NOT NULL,
    published       INTEGER,
    updated_at      INTEGER NOT NULL,
    published_at    INTEGER,
    queued          INTEGER,
    queued_action   INTEGER,
    version         INTEGER NOT NULL DEFAULT 0,
    rank            INTEGER NOT NULL DEFAULT 1,
    due_at          INTEGER,
    PRIMARY KEY (channel, channel_sku)
) WITHOUT ROWID;
INSERT INTO channel_availability_next (channel, channel_sku, sku, available, published, updated_at,
    published_at, queued, queued_action, version, rank, due_at)
SELECT channel, channel_sku, sku, available, published, updated_at, published_at, queued,
    queued_action, version, rank, CASE WHEN queued IS NOT available THEN due_at END
FROM channel_availability;
DROP TABLE channel_availability;
ALTER TABLE channel_availability_next RENAME TO channel_availability;
CREATE INDEX channel_availability_sku ON channel_availability (sku);
CREATE INDEX channel_availability_due ON channel_availability (channel, rank, due_at)
    WHERE due_at IS NOT NULL;
