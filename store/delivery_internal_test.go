package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A database from before delivery_keys holds its deduplication keys in
// deliveries: a redelivery of one is still a duplicate until it ages out,
// and then webhooks stop looking there.
func TestLegacyDeliveryKeys(t *testing.T) { forBothEngines(t, testLegacyDeliveryKeys) }

func testLegacyDeliveryKeys(t *testing.T, opts Options) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	var now atomic.Int64
	now.Store(t0.UnixMilli())
	opts.Now = func() time.Time { return time.UnixMilli(now.Load()) }
	started := func(uuid string) Delivery {
		return Delivery{Event: "meeting.started", Key: []string{"meeting.started", "1764856800000", uuid}, KeyTime: t0,
			Kind: KindStart, At: t0, Received: t0,
			Meeting: MeetingInfo{UUID: uuid, HostID: "alice", StartTime: t0, Rank: 2, StartRank: 2}}
	}
	ingest := func(s *Store, d Delivery, want Outcome) {
		t.Helper()
		if got, err := s.Ingest(ctx, d); err != nil || got != want {
			t.Fatalf("ingest %s: got %q, %v; want %q", d.Meeting.UUID, got, err, want)
		}
	}

	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.legacyKeys {
		t.Fatal("a new database has legacy keys")
	}
	old := started("uuid-old")
	err = s.w.do(ctx, func(tx *Tx) error {
		_, err := tx.exec(`INSERT INTO deliveries (key, event, received_at) VALUES (?, ?, ?)`,
			s.hash(append([]string{"delivery"}, old.Key...)...), old.Event, t0.UnixMilli())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.legacyKeys {
		t.Fatal("legacy keys not seen at open")
	}
	ingest(s, old, OutcomeDuplicate)
	ingest(s, started("uuid-new"), OutcomeAccepted)

	now.Store(t0.Add(3 * 24 * time.Hour).UnixMilli())
	if _, err := s.Sweep(ctx, Retention{Age: 48 * time.Hour, Events: 100}); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM deliveries`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("legacy keys after the sweep: %d, %v", left, err)
	}
	if s.legacyKeys {
		t.Fatal("webhooks still look for legacy keys after the last one went")
	}
}
