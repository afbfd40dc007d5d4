-- audsync schema 3: the sync engine asks, after every push, when the next pending
-- member is due. With only (segment_id, next_attempt_ms) that question scanned every
-- pending member (a whole segment during a replay); this index answers it directly.
CREATE INDEX memberships_next_attempt ON memberships (next_attempt_ms)
    WHERE acked IS NOT desired AND dead = 0;
