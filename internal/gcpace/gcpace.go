// Package gcpace gives Go's collector more room while webhooks arrive fast,
// and takes it back when they stop.
//
// A collection delays the frames sent while it marks: its workers take the
// cores the writer and the tabs' writers need. How often it runs follows
// the garbage made per second over the room GOGC leaves above the live heap
// (100%: as much again). At rest that keeps the heap, and so the idle tabs,
// lean. In a burst of webhooks (the top of the hour) it means a collection
// every few seconds just when every frame should go out at once, so while
// the burst lasts the room grows to what the burst allocates in Interval,
// by at most MaxExtra bytes. When it ends, the pages go back to the kernel.
package gcpace

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options tune the pacing; zero values take the defaults.
type Options struct {
	// Webhooks counts the webhooks received so far.
	Webhooks func() uint64
	// MaxExtra is the most heap it adds above what GOGC=100 allows.
	MaxExtra uint64
	// Interval is how far apart collections are meant to be in a burst
	// (default 20 s).
	Interval time.Duration
	// MinRate is the webhooks per second that make a burst (default 100).
	// Without them, allocation never grows the room: a storm of tabs
	// reconnecting at a quiet moment is collected at Go's default pace.
	MinRate float64
	// Tick is how often the rates are read (default 1 s).
	Tick time.Duration
}

// defaultPercent is the collector's setting outside bursts: Go's default.
const defaultPercent = 100

// Run paces the collector until ctx ends, then restores GOGC=100.
func Run(ctx context.Context, o Options) {
	if o.Interval <= 0 {
		o.Interval = 20 * time.Second
	}
	if o.MinRate <= 0 {
		o.MinRate = 100
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	defer debug.SetGCPercent(defaultPercent)
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}
	read := func() (allocs, base uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64() + samples[2].Value.Uint64() + samples[3].Value.Uint64()
	}
	tick := time.NewTicker(o.Tick)
	defer tick.Stop()
	lastAllocs, _ := read()
	lastHooks, lastAt, current := o.Webhooks(), time.Now(), defaultPercent
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			allocs, base := read()
			hooks := o.Webhooks()
			secs := now.Sub(lastAt).Seconds()
			p := percent(float64(hooks-lastHooks)/secs, float64(allocs-lastAllocs)/secs, base, o)
			lastAllocs, lastHooks, lastAt = allocs, hooks, now
			// Small changes are not worth the pacer's recomputation.
			if p != current && (p == defaultPercent || p > current*11/10 || p < current*9/10) {
				debug.SetGCPercent(p)
				current = p
				if p == defaultPercent {
					// The burst is over: collect, and hand the free pages back
					// to the kernel. Left to itself the scavenger kept them
					// (170 MiB idle, 4 MiB released, 35 s after a burst).
					debug.FreeOSMemory()
				}
			}
		}
	}
}

// percent is the GC percent that leaves room for Interval of allocation at
// allocRate (bytes/s) above base (the live heap, stacks and globals the
// percent applies to), within MaxExtra above the default's room; the
// default unless webhooks arrive at MinRate or more.
func percent(webhookRate, allocRate float64, base uint64, o Options) int {
	if webhookRate < o.MinRate || base == 0 {
		return defaultPercent
	}
	room := allocRate * o.Interval.Seconds()
	most := float64(base) + float64(o.MaxExtra)
	room = min(max(room, float64(base)), most)
	return int(defaultPercent * room / float64(base))
}
