-- audsync schema 10: what a segment summary shows, kept as it changes instead of walked.
--
-- GET /v1/segments, `segments list` and the status page (which asks every 5 seconds)
-- walked every membership and every delivery of each segment they showed: seconds of CPU
-- for a segment of a million members, taken from the applier at each refresh.
--
-- segment_counts: per segment, its members included and excluded. The store's writes of
-- memberships keep it (src/store/store.cpp, AddMemberCounts), not a trigger: a trigger
-- makes each membership insert a multi-row statement, which SQLite journals page by page,
-- and a fold of new members took twice as long.
-- delivery_counts gains, per segment and target, the newest acknowledged push
-- (last_synced_ms), and the error of the newest push that left a member retrying
-- (retry_error) or dead (dead_error). A summary shows the newer of the two among those
-- that still apply (members retrying, dead letters left).
CREATE TABLE segment_counts (
    segment_id INTEGER PRIMARY KEY REFERENCES segments(id),
    included   INTEGER NOT NULL,
    excluded   INTEGER NOT NULL
) STRICT;

INSERT INTO segment_counts (segment_id, included, excluded)
    SELECT segment_id, sum(desired = 1), sum(desired = 0) FROM memberships GROUP BY segment_id;

ALTER TABLE delivery_counts ADD COLUMN last_synced_ms INTEGER;
ALTER TABLE delivery_counts ADD COLUMN retry_error_ms INTEGER;
ALTER TABLE delivery_counts ADD COLUMN retry_error TEXT;
ALTER TABLE delivery_counts ADD COLUMN dead_error_ms INTEGER;
ALTER TABLE delivery_counts ADD COLUMN dead_error TEXT;

INSERT INTO delivery_counts (segment_id, target, pending, retrying, dead, last_synced_ms)
    SELECT segment_id, target, 0, 0, 0, max(last_push_ms) FROM deliveries
    WHERE last_status BETWEEN 200 AND 299 AND last_push_ms IS NOT NULL
    GROUP BY segment_id, target
    ON CONFLICT (segment_id, target) DO UPDATE SET last_synced_ms = excluded.last_synced_ms;

-- The newest error of a member retrying, and of a dead letter, as they stand now.
UPDATE delivery_counts AS c SET retry_error_ms = e.at, retry_error = e.error
    FROM (SELECT segment_id, target, last_push_ms AS at, last_error AS error,
                 row_number() OVER (PARTITION BY segment_id, target
                                    ORDER BY last_push_ms DESC) AS n
          FROM deliveries
          WHERE last_error IS NOT NULL AND pending = 1 AND dead = 0 AND attempts > 0) AS e
    WHERE e.n = 1 AND c.segment_id = e.segment_id AND c.target = e.target;
UPDATE delivery_counts AS c SET dead_error_ms = e.at, dead_error = e.error
    FROM (SELECT segment_id, target, last_push_ms AS at, last_error AS error,
                 row_number() OVER (PARTITION BY segment_id, target
                                    ORDER BY last_push_ms DESC) AS n
          FROM deliveries WHERE last_error IS NOT NULL AND dead = 1) AS e
    WHERE e.n = 1 AND c.segment_id = e.segment_id AND c.target = e.target;

-- A push recorded: acknowledged (2xx), or failed with an error that left the member
-- retrying (a retry) or dead (a dead letter). A list held over a platform's limit
-- (status 0, no attempt) is the segment's state (segment_targets), not a failure here.
CREATE TRIGGER delivery_counts_push AFTER UPDATE OF last_push_ms ON deliveries
WHEN new.last_push_ms IS NOT NULL AND new.last_push_ms IS NOT old.last_push_ms
BEGIN
    INSERT INTO delivery_counts (segment_id, target, pending, retrying, dead, last_synced_ms,
                                 retry_error_ms, retry_error, dead_error_ms, dead_error)
    VALUES (new.segment_id, new.target, 0, 0, 0,
            CASE WHEN new.last_status BETWEEN 200 AND 299 THEN new.last_push_ms END,
            CASE WHEN new.last_error IS NOT NULL AND new.dead = 0 AND new.attempts > 0
                 THEN new.last_push_ms END,
            CASE WHEN new.last_error IS NOT NULL AND new.dead = 0 AND new.attempts > 0
                 THEN new.last_error END,
            CASE WHEN new.last_error IS NOT NULL AND new.dead = 1 THEN new.last_push_ms END,
            CASE WHEN new.last_error IS NOT NULL AND new.dead = 1 THEN new.last_error END)
    ON CONFLICT (segment_id, target) DO UPDATE SET
        last_synced_ms = max(coalesce(last_synced_ms, excluded.last_synced_ms),
                             coalesce(excluded.last_synced_ms, last_synced_ms)),
        retry_error = CASE WHEN excluded.retry_error_ms >= coalesce(retry_error_ms, 0)
                           THEN excluded.retry_error ELSE retry_error END,
        retry_error_ms = max(coalesce(retry_error_ms, excluded.retry_error_ms),
                             coalesce(excluded.retry_error_ms, retry_error_ms)),
        dead_error = CASE WHEN excluded.dead_error_ms >= coalesce(dead_error_ms, 0)
                          THEN excluded.dead_error ELSE dead_error END,
        dead_error_ms = max(coalesce(dead_error_ms, excluded.dead_error_ms),
                            coalesce(excluded.dead_error_ms, dead_error_ms));
END;
