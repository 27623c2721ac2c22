package store

import (
	"context"
	"fmt"
	"time"
)

// Retention bounds what the database keeps, so the file does not grow
// without end. Age must exceed Zoom's retry window (hours), since ended
// meetings and deduplication keys are what make late retries harmless.
type Retention struct {
	Age    time.Duration // events, ended meetings, deduplication keys older than this go
	Events int           // at most this many newest events per user are kept
}

// sweepChunk bounds one delete, so webhooks interleave with a long sweep.
const sweepChunk = 1000

// Sweep deletes what is past retention and returns how many rows went.
func (s *Store) Sweep(ctx context.Context, r Retention) (int64, error) {
	cutoff := ms(s.opts.Now().Add(-r.Age))
	steps := []struct {
		query string
		args  []any
	}{
		{`DELETE FROM events WHERE (user_id, seq) IN (SELECT user_id, seq FROM events WHERE created_at < ? LIMIT 1000)`, []any{cutoff}},
		{`DELETE FROM events WHERE (user_id, seq) IN (SELECT e.user_id, e.seq FROM events e JOIN users u ON u.id = e.user_id
			WHERE e.seq <= u.seq - ? LIMIT 1000)`, []any{r.Events}},
		{`DELETE FROM meetings WHERE uuid IN (SELECT uuid FROM meetings WHERE live = 0 AND updated_at < ? LIMIT 1000)`, []any{cutoff}},
		// Keys are in event time order; one older than its event stays
		// until its own age is past (an event without event_ts has at 0).
		{`DELETE FROM delivery_keys WHERE (at, key) IN (SELECT at, key FROM delivery_keys
			WHERE at < ? AND received_at < ? LIMIT 1000)`, []any{cutoff, cutoff}},
		// An event_ts still ahead of the clock long after its arrival was
		// never a real time: without this its key would stay for good.
		{`DELETE FROM delivery_keys WHERE (at, key) IN (SELECT at, key FROM delivery_keys
			WHERE at > ? AND received_at < ? LIMIT 1000)`, []any{ms(s.opts.Now()), cutoff}},
		{`DELETE FROM deliveries WHERE key IN (SELECT key FROM deliveries WHERE received_at < ? LIMIT 1000)`, []any{cutoff}},
		{`DELETE FROM bot_requests WHERE id IN (SELECT id FROM bot_requests WHERE active = 0 AND updated_at < ? LIMIT 1000)`, []any{cutoff}},
		{`DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions WHERE expires_at < ? LIMIT 1000)`, []any{ms(s.opts.Now())}},
	}
	var total int64
	for _, step := range steps {
		for {
			var n int64
			err := s.w.do(ctx, func(tx *Tx) error {
				res, err := tx.exec(step.query, step.args...)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			if err != nil {
				return total, fmt.Errorf("sweep: %w", err)
			}
			total += n
			if n < sweepChunk {
				break
			}
		}
	}
	// Once the keys of before delivery_keys are gone, webhooks stop
	// looking there.
	err := s.w.do(ctx, func(tx *Tx) error {
		if !tx.s.legacyKeys {
			return nil
		}
		return tx.queryRow(`SELECT EXISTS (SELECT 1 FROM deliveries)`).Scan(&tx.s.legacyKeys)
	})
	if err != nil {
		return total, fmt.Errorf("sweep: %w", err)
	}
	return total, nil
}
