-- claim: the worker (of any node) delivering an item, which holds it until
-- next_at; every change to the item checks it.
ALTER TABLE bot_outbox ADD COLUMN claim TEXT NOT NULL DEFAULT '';
