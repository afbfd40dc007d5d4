-- audsync schema 5: ingest appends to a durable inbox (a file of its own, beside this
-- one: <database>-inbox) and an applier folds it into memberships in large batches.
-- This file keeps what the applier decides; the raw events live only in the inbox.

-- How far the applier has folded the inbox: every inbox row with seq <= applied_seq is
-- in memberships, written in the same transaction as this row, so that after a crash
-- the applier resumes here and applies nothing twice.
CREATE TABLE applier (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq INTEGER NOT NULL
) STRICT;
INSERT INTO applier (id, applied_seq) VALUES (1, 0);

-- De-duplication by messageId within the window: a 64-bit hash of (destination,
-- messageId) (audsync_dedupe_key, the first 64 bits of SHA-1) and when it was received.
-- The rowid is the hash: one B-tree, no index; pruning walks the hash space in slices.
CREATE TABLE dedupe (
    hash        INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL
) STRICT;

INSERT INTO dedupe (hash, received_ms)
    SELECT audsync_dedupe_key(destination, message_id), received_ms FROM events WHERE true
    ON CONFLICT (hash) DO UPDATE SET received_ms = max(received_ms, excluded.received_ms);

-- inbox_seq: the inbox row of the deciding event (its raw payload, while retained).
-- ignored_*: the latest event after the deciding one that changed nothing, and why
-- ('duplicate' or 'stale'), for the member lookup.
ALTER TABLE memberships ADD COLUMN inbox_seq INTEGER;
ALTER TABLE memberships ADD COLUMN ignored_message_id TEXT;
ALTER TABLE memberships ADD COLUMN ignored_outcome TEXT;
ALTER TABLE memberships ADD COLUMN ignored_ms INTEGER;

-- The raw JSON of events decided before this schema is not kept (as if its raw
-- retention had passed); their de-duplication entries are above.
DROP TABLE events;
