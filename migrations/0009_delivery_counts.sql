-- audsync schema 9: the counts of pending, retrying and dead deliveries per segment and
-- target, kept by triggers on deliveries.
--
-- /metrics, the status page and the REST summaries counted them by walking every pending
-- delivery (and joining its membership) at each request: at a million pending changes a
-- scrape took a second of CPU from the applier and the sync engine, for as long as the
-- backlog lasted. A trigger adds each row's change to one small row per segment and
-- target instead: every statement that writes deliveries keeps the counts exact, in the
-- same transaction, whoever runs it.
--
-- pending:  pending = 1 AND dead = 0 (the rows of deliveries_due)
-- retrying: of those, the ones with a failed attempt (attempts > 0)
-- dead:     dead = 1 (the rows of deliveries_dead)
CREATE TABLE delivery_counts (
    segment_id INTEGER NOT NULL REFERENCES segments(id),
    target     TEXT NOT NULL,
    pending    INTEGER NOT NULL,
    retrying   INTEGER NOT NULL,
    dead       INTEGER NOT NULL,
    PRIMARY KEY (segment_id, target)
) STRICT, WITHOUT ROWID;

INSERT INTO delivery_counts (segment_id, target, pending, retrying, dead)
    SELECT segment_id, target, sum(pending = 1 AND dead = 0),
           sum(pending = 1 AND dead = 0 AND attempts > 0), sum(dead = 1)
    FROM deliveries GROUP BY segment_id, target;

CREATE TRIGGER delivery_counts_insert AFTER INSERT ON deliveries
WHEN (new.pending = 1 AND new.dead = 0) OR new.dead = 1
BEGIN
    INSERT INTO delivery_counts (segment_id, target, pending, retrying, dead)
    VALUES (new.segment_id, new.target, new.pending = 1 AND new.dead = 0,
            new.pending = 1 AND new.dead = 0 AND new.attempts > 0, new.dead = 1)
    ON CONFLICT (segment_id, target) DO UPDATE SET
        pending = pending + excluded.pending,
        retrying = retrying + excluded.retrying,
        dead = dead + excluded.dead;
END;

-- segment_id and target are the primary key: no statement changes them.
CREATE TRIGGER delivery_counts_update AFTER UPDATE OF pending, dead, attempts ON deliveries
WHEN (old.pending = 1 AND old.dead = 0) IS NOT (new.pending = 1 AND new.dead = 0)
  OR (old.pending = 1 AND old.dead = 0 AND old.attempts > 0) IS NOT
     (new.pending = 1 AND new.dead = 0 AND new.attempts > 0)
  OR (old.dead = 1) IS NOT (new.dead = 1)
BEGIN
    INSERT INTO delivery_counts (segment_id, target, pending, retrying, dead)
    VALUES (new.segment_id, new.target,
            (new.pending = 1 AND new.dead = 0) - (old.pending = 1 AND old.dead = 0),
            (new.pending = 1 AND new.dead = 0 AND new.attempts > 0) -
            (old.pending = 1 AND old.dead = 0 AND old.attempts > 0),
            (new.dead = 1) - (old.dead = 1))
    ON CONFLICT (segment_id, target) DO UPDATE SET
        pending = pending + excluded.pending,
        retrying = retrying + excluded.retrying,
        dead = dead + excluded.dead;
END;

CREATE TRIGGER delivery_counts_delete AFTER DELETE ON deliveries
WHEN (old.pending = 1 AND old.dead = 0) OR old.dead = 1
BEGIN
    UPDATE delivery_counts SET
        pending = pending - (old.pending = 1 AND old.dead = 0),
        retrying = retrying - (old.pending = 1 AND old.dead = 0 AND old.attempts > 0),
        dead = dead - (old.dead = 1)
    WHERE segment_id = old.segment_id AND target = old.target;
END;
