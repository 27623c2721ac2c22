-- Deduplication keys, ordered by the event's own time (event_ts) so that a
-- commit's new keys land side by side at the end of one B-tree: the old
-- table kept random hex keys in three (rows, key, received_at), so every
-- webhook wrote a leaf of its own in each. key is the first 16 bytes of the
-- keyed hash. deliveries is read until its rows age out (see retention.go).
CREATE TABLE delivery_keys (
	at          INTEGER NOT NULL, -- event_ts in ms, 0 when the event has none
	key         BLOB NOT NULL,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (at, key)
) WITHOUT ROWID;
