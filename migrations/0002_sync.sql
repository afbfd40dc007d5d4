-- audsync schema 2: push bookkeeping for the sync engine.

-- The outcome of the last push that carried the member: HTTP status (0: no answer)
-- and when. With last_error, it explains a pending or dead member.
ALTER TABLE memberships ADD COLUMN last_status INTEGER;
ALTER TABLE memberships ADD COLUMN last_push_ms INTEGER;

-- When the destination's next push may start (rate limits, refused credentials), so
-- that a restart honours it.
ALTER TABLE destinations ADD COLUMN paused_until_ms INTEGER NOT NULL DEFAULT 0;

-- Dead letters, per segment, for listing.
CREATE INDEX memberships_dead ON memberships (segment_id, context_key) WHERE dead = 1;
