-- Channel availability is fed to channels from state, not from one queued action per change:
-- each listing row remembers what was last handed to the outbox, and the feeder batches every
-- listing whose available differs from it, zero-outs first, increases after the channel's hold.

-- The value last handed to the outbox for delivery (NULL: none yet). A listing whose available
-- differs from it is due for an update.
ALTER TABLE channel_availability ADD COLUMN queued BIGINT;
-- The outbox action that carries the queued value. While it is open the listing is left out of
-- further batches, so each listing's updates reach its channel one after another.
ALTER TABLE channel_availability ADD COLUMN queued_action BIGINT;
-- Bumped on every change of available.
ALTER TABLE channel_availability ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- 0 zero-out, 1 decrease (or nothing known), 2 increase: the order updates are sent in.
ALTER TABLE channel_availability ADD COLUMN rank BIGINT NOT NULL DEFAULT 1;
-- When the update may be sent: now, or after the channel's increase hold.
ALTER TABLE channel_availability ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0;

CREATE INDEX channel_availability_due ON channel_availability (channel, rank, due_at)
    WHERE queued IS DISTINCT FROM available;
