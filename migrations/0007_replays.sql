-- audsync schema 7: a replay is a cursor per segment and target, not a mark on every
-- member. Members whose key is above after_key, held at the target (pending = 0,
-- dead = 0), are still to be pushed again; the sync engine reads them in key order after
-- the pending ones and moves the cursor once a range is acknowledged. A member that a
-- replay push fails for becomes pending like any other, and goes the usual way (retries,
-- dead letters). `generation` counts requests: a range read before a newer request never
-- moves the newer cursor. `next_attempt_ms`: after a failed range, the replay waits.
CREATE TABLE replays (
    segment_id      INTEGER NOT NULL REFERENCES segments(id),
    target          TEXT NOT NULL,
    after_key       TEXT NOT NULL,
    generation      INTEGER NOT NULL,
    started_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (segment_id, target)
) STRICT, WITHOUT ROWID;
