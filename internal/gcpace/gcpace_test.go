package gcpace

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	o := Options{MaxExtra: 256 * mib, Interval: 20 * time.Second, MinRate: 100}
	for _, tc := range []struct {
		name                  string
		webhookRate, allocMiB float64
		baseMiB               uint64
		want                  int
	}{
		{"at rest", 5, 1, 60, 100},
		{"a storm of reconnects, no webhooks", 0, 200, 60, 100},
		{"just under the burst rate", 99, 20, 60, 100},
		{"a burst that fits the default's room", 1000, 2, 60, 100},
		{"push at 1,000/s", 1000, 10, 60, 333},
		{"ingest at 10,000/s: capped", 10000, 100, 60, 526},
		{"a larger heap needs less", 1000, 10, 400, 100},
		{"no heap yet", 1000, 10, 0, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percent(tc.webhookRate, tc.allocMiB*mib, tc.baseMiB*mib, o); got != tc.want {
				t.Fatalf("percent = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCeiling(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		base, extra uint64
		want        int
	}{
		{60 * mib, 256 * mib, 526},
		{150 * mib, 256 * mib, 270}, // the base grew in a burst: the percent comes down
		{0, 256 * mib, 100},
		{1, 1 << 40, 1_000_100}, // bounded: SetGCPercent takes an int32
	} {
		if got := ceiling(tc.base, tc.extra); got != tc.want {
			t.Errorf("ceiling(%d, %d) = %d, want %d", tc.base, tc.extra, got, tc.want)
		}
	}
}

// gogc is the collector's current setting, as the runtime reports it.
func gogc() uint64 { return readMetric("/gc/gogc:percent") }

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRun: a burst of webhooks with garbage raises the setting, a short
// pause keeps it, the burst's end brings back 100 with a collection, and
// so does the end of Run.
func TestRun(t *testing.T) {
	var hooks atomic.Uint64
	var bursting atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Webhooks: hooks.Load, MaxExtra: 1 << 30, Interval: 20 * time.Second, Tick: 20 * time.Millisecond, Linger: 300 * time.Millisecond})
	}()
	// The burst: a webhook and 64 KiB of garbage every 0.2 ms.
	stop := make(chan struct{})
	var sink []byte
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if bursting.Load() {
				hooks.Add(1)
				sink = make([]byte, 64<<10)
				_ = sink
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	defer close(stop)
	waitFor := func(what string, ok func(uint64) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(gogc()) {
			if time.Now().After(deadline) {
				t.Fatalf("GOGC is %d; want it %s", gogc(), what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	bursting.Store(true)
	waitFor("above 100 in a burst", func(p uint64) bool { return p > 100 })
	// A pause shorter than Linger keeps the room.
	bursting.Store(false)
	time.Sleep(60 * time.Millisecond)
	if p := gogc(); p <= 100 {
		t.Fatalf("GOGC fell to %d in a pause of 60 ms; Linger is 300 ms", p)
	}
	bursting.Store(true)
	forced := readMetric("/gc/cycles/forced:gc-cycles")
	bursting.Store(false)
	waitFor("back at 100 after it", func(p uint64) bool { return p == 100 })
	for deadline := time.Now().Add(10 * time.Second); readMetric("/gc/cycles/forced:gc-cycles") == forced; {
		if time.Now().After(deadline) {
			t.Fatal("no collection at the end of the burst: the heap would keep its pages")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bursting.Store(true)
	waitFor("above 100 in another burst", func(p uint64) bool { return p > 100 })
	cancel()
	<-done
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC is %d after Run ended; want 100", p)
	}
}
