package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onair/store"
)

// benchHosts is how many hosts the benchmark deliveries are spread over, as
// onair-bench's ingest scenario does.
const benchHosts = 1000

// benchOpen opens a store on a fresh file under b.TempDir(), closed when
// the benchmark ends.
func benchOpen(b *testing.B, opts store.Options) *store.Store {
	b.Helper()
	opts.Path = filepath.Join(b.TempDir(), "onair.db")
	st, err := store.Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func benchHost(i int) string { return "bench-host-" + strconv.Itoa(i%benchHosts) }

// benchStarted is delivery n's meeting.started for host, filled as
// web.delivery fills it from shared/zoom/payloads/meeting.started.json.
func benchStarted(host string, n int64, now time.Time) store.Delivery {
	// Random-looking, as Zoom's are: counted uuids sort in the order they
	// come, which made the indexes' inserts sequential (parallel: 37 µs a
	// webhook against 46 µs with these).
	sum := sha256.Sum256(strconv.AppendInt(nil, n, 10))
	uuid := base64.StdEncoding.EncodeToString(sum[:16])
	at := time.UnixMilli(1764856800123 + n).UTC()
	start := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	return store.Delivery{
		Event: "meeting.started", Key: []string{"meeting.started", strconv.FormatInt(at.UnixMilli(), 10), uuid},
		KeyTime: at, Kind: store.KindStart, At: at, Received: now,
		Meeting: store.MeetingInfo{
			UUID: uuid, ID: "85746065432", Topic: "Weekly sync", HostID: host, Type: 2,
			StartTime: start, Duration: 30, Timezone: "Europe/Berlin", Rank: 2, StartRank: 2,
		},
	}
}

// benchIngest ingests d and fails the benchmark unless it was accepted.
func benchIngest(b *testing.B, st *store.Store, d store.Delivery) {
	out, err := st.Ingest(context.Background(), d)
	if err != nil || out != store.OutcomeAccepted {
		b.Errorf("ingest %s: %s, %v", d.Meeting.UUID, out, err)
	}
}

// benchWarm makes every bench host a known user, concurrently so the
// writer batches them, so the timed part measures steady-state ingest.
func benchWarm(b *testing.B, st *store.Store, next *atomic.Int64) {
	b.Helper()
	var wg sync.WaitGroup
	now := time.Now()
	for i := range benchHosts {
		wg.Go(func() { benchIngest(b, st, benchStarted(benchHost(i), next.Add(1), now)) })
	}
	wg.Wait()
}

func BenchmarkIngest(b *testing.B) {
	var next atomic.Int64 // distinct deliveries across every run
	var entries atomic.Int64
	st := benchOpen(b, store.Options{OnCommit: func(c store.Committed) { entries.Add(int64(len(c.Entries))) }})
	benchWarm(b, st, &next)

	b.Run("serial", func(b *testing.B) {
		before := entries.Load()
		b.ReportAllocs()
		for b.Loop() {
			n := next.Add(1)
			benchIngest(b, st, benchStarted(benchHost(int(n)), n, time.Now()))
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
		if got := entries.Load() - before; got != int64(b.N) {
			b.Fatalf("%d entries committed, want %d", got, b.N)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		before := entries.Load()
		b.SetParallelism(32) // 32 × GOMAXPROCS concurrent webhooks: the writer batches them
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := next.Add(1)
				benchIngest(b, st, benchStarted(benchHost(int(n)), n, time.Now()))
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
		if got := entries.Load() - before; got != int64(b.N) {
			b.Fatalf("%d entries committed, want %d", got, b.N)
		}
	})
}

func BenchmarkWelcome(b *testing.B) {
	const user = "bench-welcome-user"
	st := benchOpen(b, store.Options{})
	now := time.Now()
	// Five meetings that stay live (seq 1..5), then five started and ended
	// (seq 6..15): the snapshot has 5 meetings, a resume from 5 replays 10.
	for n := range int64(5) {
		benchIngest(b, st, benchStarted(user, n, now))
	}
	for n := int64(5); n < 10; n++ {
		d := benchStarted(user, n, now)
		benchIngest(b, st, d)
		d.Event, d.Kind = "meeting.ended", store.KindEnd
		d.Key = []string{"meeting.ended", strconv.FormatInt(d.At.UnixMilli()+1, 10), d.Meeting.UUID}
		d.At = d.At.Add(time.Millisecond)
		d.Meeting.EndTime = d.At
		benchIngest(b, st, d)
	}
	ctx := context.Background()
	first, err := st.Welcome(ctx, user, nil, 1000)
	if err != nil {
		b.Fatal(err)
	}
	if first.Seq != 15 || len(first.Meetings) != 5 {
		b.Fatalf("set-up: seq %d with %d live meetings, want 15 with 5", first.Seq, len(first.Meetings))
	}

	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w, err := st.Welcome(ctx, user, nil, 1000)
			if err != nil || w.Resumed || len(w.Meetings) != 5 {
				b.Fatalf("welcome: resumed %v, %d meetings, %v", w.Resumed, len(w.Meetings), err)
			}
		}
	})
	b.Run("resume=10", func(b *testing.B) {
		since := &store.Position{Epoch: first.Epoch, Seq: first.Seq - 10}
		b.ReportAllocs()
		for b.Loop() {
			w, err := st.Welcome(ctx, user, since, 1000)
			if err != nil || !w.Resumed || len(w.Entries) != 10 {
				b.Fatalf("welcome: resumed %v, %d entries, %v", w.Resumed, len(w.Entries), err)
			}
		}
	})
}
