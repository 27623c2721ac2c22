-- Deduplication keys, ordered by the event's own time (event_ts) so that new
-- keys land side by side at the end of one index, instead of random hex keys
-- in two (key, received_at). key is the first 16 bytes of the keyed hash.
-- deliveries is read until its rows age out (see retention.go).
CREATE TABLE delivery_keys (
	at          BIGINT NOT NULL, -- event_ts in ms, 0 when the event has none
	key         BYTEA NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (at, key)
);
