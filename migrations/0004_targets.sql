-- audsync schema 4: a destination fans out to targets. The desired state stays in
-- memberships, stored once; what each target holds (acknowledged state and version,
-- attempts, next attempt, dead letter, last answer) moves to deliveries, one row per
-- member and target, so that one target refusing or down never delays another.
-- The delivery state of schema 3 becomes that of the implicit LaunchDarkly target
-- "launchdarkly" (the id the flat LaunchDarkly fields of a destination stand for), so
-- nothing acknowledged is pushed again.

CREATE TABLE targets (
    destination     TEXT NOT NULL REFERENCES destinations(id),
    id              TEXT NOT NULL,
    platform        TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,   -- 0: no longer configured
    status          TEXT NOT NULL DEFAULT 'ok',   -- ok | rate_limited | auth_failed
    paused_until_ms INTEGER NOT NULL DEFAULT 0,
    last_success_ms INTEGER,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    PRIMARY KEY (destination, id)
) STRICT;

-- `pending` is 1 while the target does not hold the desired state (acked IS NOT
-- desired, kept by every write that changes either). `dead_version`: the membership
-- version a dead letter refused; a new version is pushed again.
CREATE TABLE deliveries (
    segment_id      INTEGER NOT NULL REFERENCES segments(id),
    context_key     TEXT NOT NULL,
    target          TEXT NOT NULL,
    pending         INTEGER NOT NULL,
    acked           INTEGER,
    acked_version   INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    last_push_ms    INTEGER,
    dead            INTEGER NOT NULL DEFAULT 0,
    dead_version    INTEGER,
    PRIMARY KEY (segment_id, context_key, target)
) STRICT, WITHOUT ROWID;

CREATE INDEX deliveries_due ON deliveries (target, segment_id, next_attempt_ms)
    WHERE pending = 1 AND dead = 0;
CREATE INDEX deliveries_next ON deliveries (next_attempt_ms) WHERE pending = 1 AND dead = 0;
CREATE INDEX deliveries_dead ON deliveries (segment_id, context_key) WHERE dead = 1;

-- A segment's state at one target, for what is about the segment as a whole: a
-- full-list platform's list over the platform's limit (never truncated), or a refusal.
CREATE TABLE segment_targets (
    segment_id INTEGER NOT NULL REFERENCES segments(id),
    target     TEXT NOT NULL,
    status     TEXT NOT NULL,   -- ok | over_limit | refused
    error      TEXT,
    limit_name TEXT,            -- the platform limit an over_limit list exceeds
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (segment_id, target)
) STRICT;

INSERT INTO targets (destination, id, platform, status, paused_until_ms, last_success_ms,
                     last_error, created_ms)
    SELECT id, 'launchdarkly', 'launchdarkly', status, paused_until_ms, last_success_ms,
           last_error, created_ms FROM destinations;

INSERT INTO deliveries (segment_id, context_key, target, pending, acked, acked_version,
                        attempts, next_attempt_ms, last_status, last_error, last_push_ms, dead,
                        dead_version)
    SELECT segment_id, context_key, 'launchdarkly', acked IS NOT desired, acked, acked_version,
           attempts, next_attempt_ms, last_status, last_error, last_push_ms, dead,
           CASE WHEN dead = 1 THEN version END
    FROM memberships;

DROP INDEX memberships_dirty;
DROP INDEX memberships_dead;
DROP INDEX memberships_next_attempt;
ALTER TABLE memberships DROP COLUMN acked;
ALTER TABLE memberships DROP COLUMN acked_version;
ALTER TABLE memberships DROP COLUMN attempts;
ALTER TABLE memberships DROP COLUMN next_attempt_ms;
ALTER TABLE memberships DROP COLUMN last_error;
ALTER TABLE memberships DROP COLUMN dead;
ALTER TABLE memberships DROP COLUMN last_status;
ALTER TABLE memberships DROP COLUMN last_push_ms;
