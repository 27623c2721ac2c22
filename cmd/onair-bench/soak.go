package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// runSoak holds the tabs and sends at the rate for --d, and records the
// server's RSS, goroutines and open files every minute: they must stay flat.
func runSoak(ctx context.Context, b *bench) (*report, error) {
	r := newReport("soak")
	var lat samples
	tabs, err := b.connectTabs(ctx, b.cfg.tabs, b.cfg.users, lat.add)
	defer closeTabs(tabs)
	if err != nil {
		return nil, err
	}
	d := newDriver(b, b.cfg.users, tabs)
	var curve []map[string]any
	sample := func(minute int) {
		point := map[string]any{
			"minute":     minute,
			"rss_mb":     float64(b.rss()) / (1 << 20),
			"goroutines": b.metric("go_goroutines"),
			"open_files": b.openFiles(),
			"frames":     sumTabs(tabs, func(t *tab) int64 { return t.frames.Load() }),
		}
		curve = append(curve, point)
		fmt.Fprintf(b.log, "soak: minute %d rss %.1f MiB goroutines %v open files %v\n",
			minute, point["rss_mb"], point["goroutines"], point["open_files"])
	}
	sample(0)
	minutes := max(1, int(b.cfg.duration/time.Minute))
	for m := 1; m <= minutes && ctx.Err() == nil; m++ {
		d.paced(ctx, b.cfg.rate, time.Minute, b.cfg.concurrency)
		sample(m)
	}
	got := waitFrames(tabs, d.expected.Load(), 15*time.Second)
	q, mx := lat.quantiles(0.5, 0.99)
	r.set("tabs", b.cfg.tabs)
	r.set("rate", b.cfg.rate)
	r.set("minutes", minutes)
	r.set("frames_expected", d.expected.Load())
	r.set("frames_received", got)
	r.set("gaps", sumTabs(tabs, func(t *tab) int64 { return t.gaps.Load() }))
	r.set("duplicates", sumTabs(tabs, func(t *tab) int64 { return t.dups.Load() }))
	r.set("latency_p50_ms", q[0])
	r.set("latency_p99_ms", q[1])
	r.set("latency_max_ms", mx)
	r.set("curve", curve)
	r.check(got == d.expected.Load(), "frames lost")
	r.check(r.values["gaps"] == int64(0) && r.values["duplicates"] == int64(0), "gaps or duplicates")
	return r, nil
}

// openFiles counts the servers' open file descriptors (-1 when unknown).
func (b *bench) openFiles() int {
	pids := b.serverPIDs()
	if len(pids) == 0 {
		return -1
	}
	n := 0
	for _, pid := range pids {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			return -1
		}
		n += len(entries)
	}
	return n
}
