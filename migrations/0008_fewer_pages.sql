-- audsync schema 8: fewer pages written per member change on a large workspace.
--
-- deliveries_next held every pending delivery by its next attempt, for one question: when
-- is the next one due after now. Each change that made a delivery pending inserted an
-- entry at a random place of it, and each acknowledgement removed one: two random index
-- pages written per change, on top of the row and deliveries_due. deliveries_due answers
-- the same question per (target, segment), a handful of seeks.
DROP INDEX deliveries_next;
