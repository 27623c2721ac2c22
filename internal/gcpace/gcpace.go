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
	// Tick is how often the rates are read (default 250 ms): a burst
	// finds the heap of a quiet moment near its goal, so the room must come
	// before the first collection.
	Tick time.Duration
	// Linger is how long the room stays after the burst, so that webhooks
	// in clumps do not make it come and go (default 5 s).
	Linger time.Duration
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
		o.Tick = 250 * time.Millisecond
	}
	if o.Linger <= 0 {
		o.Linger = 5 * time.Second
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
	// Rates are taken over the last window ticks (a second by default), so
	// that one uneven tick does not start a burst.
	type point struct {
		at            time.Time
		allocs, hooks uint64
	}
	const window = 4
	var past [window]point
	allocs, _ := read()
	for i := range past {
		past[i] = point{time.Now(), allocs, o.Webhooks()}
	}
	current := defaultPercent
	var calmSince time.Time // when the burst's rates last fell to the default's
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			allocs, base := read()
			hooks := o.Webhooks()
			from := past[n%window]
			past[n%window] = point{now, allocs, hooks}
			secs := now.Sub(from.at).Seconds()
			if secs <= 0 {
				continue
			}
			p := percent(float64(hooks-from.hooks)/secs, float64(allocs-from.allocs)/secs, base, o)
			target, ended := current, false
			switch {
			case p > defaultPercent:
				// In a burst the room only grows: taking some back would
				// start a collection early. (Steps under 10% are not worth
				// the pacer's recomputation.)
				calmSince = time.Time{}
				if p > current*11/10 {
					target = p
				}
			case current == defaultPercent:
			case calmSince.IsZero():
				calmSince = now
			case now.Sub(calmSince) >= o.Linger:
				target, ended = defaultPercent, true
			}
			// The percent applies to the base, which may grow in a burst
			// (tabs connecting): MaxExtra holds whatever it becomes.
			target = min(target, ceiling(base, o.MaxExtra))
			if target == current {
				continue
			}
			debug.SetGCPercent(target)
			current = target
			if ended {
				// The burst is over: collect, and hand the free pages back
				// to the kernel. Left to itself the scavenger kept them
				// (170 MiB idle, 4 MiB released, 35 s after a burst).
				calmSince = time.Time{}
				debug.FreeOSMemory()
			}
		}
	}
}

// ceiling is the percent that leaves MaxExtra more room above base than
// the default does.
func ceiling(base, maxExtra uint64) int {
	if base == 0 {
		return defaultPercent
	}
	return defaultPercent + int(min(defaultPercent*float64(maxExtra)/float64(base), 1e6))
}

// percent is the GC percent that leaves room for Interval of allocation at
// allocRate (bytes/s) above base (the live heap, stacks and globals the
// percent applies to), within MaxExtra above the default's room; the
// default unless webhooks arrive at MinRate or more.
func percent(webhookRate, allocRate float64, base uint64, o Options) int {
	if webhookRate < o.MinRate || base == 0 {
		return defaultPercent
	}
	room := min(max(allocRate*o.Interval.Seconds(), float64(base)), float64(base)+float64(o.MaxExtra))
	return min(int(defaultPercent*room/float64(base)), ceiling(base, o.MaxExtra))
}
