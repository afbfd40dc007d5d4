-- audsync schema 11: the applier folds a large batch in parts, one transaction each.
--
-- A fold of 80,000 events over a million members writes pages all over the tables; in
-- one transaction it would pass the WAL's bound, and in transactions of a batch each it
-- writes the same pages again and again. The applier now reads one large batch, checks
-- its messageIds against the window in hash order, then folds its members in key order,
-- each part a transaction of its own (src/store/applier.cpp).
--
-- dedupe.seq: the inbox row whose check wrote the entry. A part of a fold that committed
-- before a crash left its entries; the same inbox row checked again after the restart
-- finds its own entry and is not a duplicate of itself.
ALTER TABLE dedupe ADD COLUMN seq INTEGER;

-- The fold in progress: the rows after applied_seq up to fold_end_seq, of which the first
-- fold_folded in member order are committed. NULL: none. applied_seq moves to
-- fold_end_seq, and these go back to NULL and 0, with the last part.
ALTER TABLE applier ADD COLUMN fold_end_seq INTEGER;
ALTER TABLE applier ADD COLUMN fold_folded INTEGER NOT NULL DEFAULT 0;
