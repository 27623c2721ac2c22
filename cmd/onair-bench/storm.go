package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// runStorm connects the tabs, then restarts the server (with --server) or
// drops every socket, and has all tabs reconnect with jittered exponential
// backoff and resume while webhooks keep coming. It reports how long until
// every tab resumed, and any gap or duplicate.
func runStorm(ctx context.Context, b *bench) (*report, error) {
	r := newReport("storm")
	tabs, err := b.connectTabs(ctx, b.cfg.tabs, b.cfg.users, nil)
	defer func() { closeTabs(tabs) }()
	if err != nil {
		return nil, err
	}
	d := newDriver(b, b.cfg.users, tabs)
	// One event per user before the storm, so every tab has a position.
	for range b.cfg.users {
		d.one(ctx)
	}
	waitFrames(tabs, d.expected.Load(), 10*time.Second)

	stormCtx, stopStorm := context.WithCancel(ctx)
	defer stopStorm()
	var wg sync.WaitGroup
	resumedAt := make([]time.Time, len(tabs))
	start := time.Now()
	for i, t := range tabs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-t.closed
			if err := t.reconnect(stormCtx); err == nil {
				resumedAt[i] = time.Now()
				go t.read()
			}
		}()
	}
	restarted := "sockets dropped by the clients"
	if b.cmd != nil {
		restarted = "server restarted"
		stopped, err := b.restart(ctx)
		if err != nil {
			return nil, err
		}
		r.set("server_stopped_s", stopped.Seconds())
	} else {
		closeTabs(tabs)
	}
	ready := time.Since(start) // the server takes connections again
	// Events while the tabs come back: they must arrive by resume or live.
	senders := make(chan struct{})
	go func() {
		defer close(senders)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for stormCtx.Err() == nil {
			select {
			case <-tick.C:
				d.one(stormCtx)
			case <-stormCtx.Done():
			}
		}
	}()
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(2 * time.Minute):
	}
	allBack := time.Since(start)
	stopStorm()
	<-senders
	var last time.Time
	back := 0
	for _, at := range resumedAt {
		if !at.IsZero() {
			back++
			if at.After(last) {
				last = at
			}
		}
	}
	got := waitFrames(tabs, d.expected.Load(), 15*time.Second)

	r.set("tabs", b.cfg.tabs)
	r.set("users", b.cfg.users)
	r.set("how", restarted)
	r.set("tabs_back", back)
	r.set("all_back_s", allBack.Seconds())
	if !last.IsZero() {
		r.set("last_resumed_s", last.Sub(start).Seconds())
	}
	r.set("server_back_s", ready.Seconds())
	r.set("welcomes_resumed", sumTabs(tabs, func(t *tab) int64 { return t.resumed.Load() }))
	r.set("welcomes_fresh_snapshot", sumTabs(tabs, func(t *tab) int64 { return t.snapshots.Load() }))
	r.set("frames_expected", d.expected.Load())
	r.set("frames_received", got)
	r.set("gaps", sumTabs(tabs, func(t *tab) int64 { return t.gaps.Load() }))
	r.set("duplicates", sumTabs(tabs, func(t *tab) int64 { return t.dups.Load() }))
	r.check(back == len(tabs), "tabs that never came back")
	// A webhook sent while the server stops may be committed and its answer
	// lost (Zoom would retry it): its frame arrives though it was not counted.
	r.check(got >= d.expected.Load(), "frames lost")
	r.check(r.values["gaps"] == int64(0) && r.values["duplicates"] == int64(0), "gaps or duplicates")
	r.check(r.values["welcomes_fresh_snapshot"] == int64(0), "tabs not resumed")
	return r, nil
}

// reconnect retries connect with the backoff onair.js uses: attempt n
// waits base*2^n capped at 10 s, times a random factor in [0, 1] (full
// jitter), from 250 ms; after a 1012 (the server said it is restarting)
// every attempt waits up to 2 s.
// It resumes from the tab's last position.
func (t *tab) reconnect(ctx context.Context) error {
	const base = 250 * time.Millisecond
	limit, n := 10*time.Second, 0
	if t.closeCode == closeServiceRestart {
		limit, n = 2*time.Second, 3
	}
	for ; ; n++ {
		step := min(base<<min(n, 16), limit)
		wait := time.Duration(rand.Int64N(int64(step) + 1))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := t.connect(ctx); err == nil {
			return nil
		}
	}
}
