package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"onair/zoom"
)

// runIngest sends signed meeting.started webhooks from C keep-alive senders
// for D, then checks that every delivery answered 200 is in the state.
func runIngest(ctx context.Context, b *bench) (*report, error) {
	const hosts = 1000
	run := fmt.Sprintf("ingest-%d-", time.Now().UnixNano())
	var lat samples
	var sent, accepted, failed atomic.Int64
	acked := make([][]ack, b.cfg.concurrency)
	start := time.Now()
	deadline := start.Add(b.cfg.duration)
	var wg sync.WaitGroup
	for w := range b.cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				host := run + userID(rand.IntN(hosts))
				uuid := newUUID()
				status, d, err := b.send(ctx, webhookBody(zoom.EventMeetingStarted, uuid, host, time.Now()))
				sent.Add(1)
				lat.add(d)
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					continue
				}
				accepted.Add(1)
				acked[w] = append(acked[w], ack{host, uuid})
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := newReport("ingest")
	r.set("concurrency", b.cfg.concurrency)
	r.set("duration_s", elapsed.Seconds())
	r.set("sent", sent.Load())
	r.set("accepted", accepted.Load())
	r.set("not_accepted", failed.Load())
	r.set("accepted_per_s", float64(accepted.Load())/elapsed.Seconds())
	q, mx := lat.quantiles(0.5, 0.99)
	r.set("p50_ms", q[0])
	r.set("p99_ms", q[1])
	r.set("max_ms", mx)
	missing, err := b.verifyLive(ctx, acked)
	if err != nil {
		return nil, err
	}
	r.set("acked_missing_from_state", missing)
	r.check(missing == 0, "acknowledged deliveries missing from the state")
	r.check(failed.Load() == 0, "deliveries not answered 200")
	return r, nil
}

type ack struct{ host, uuid string }

// verifyLive asks the API, as each host, for their live meetings and counts
// acknowledged meetings that are not there.
func (b *bench) verifyLive(ctx context.Context, acked [][]ack) (int, error) {
	byHost := map[string][]string{}
	for _, list := range acked {
		for _, a := range list {
			byHost[a.host] = append(byHost[a.host], a.uuid)
		}
	}
	missing := 0
	for host, uuids := range byHost {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/api/v1/meetings/live", nil)
		req.Header.Set("Authorization", "Bearer "+b.token(host))
		resp, err := b.client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("verify: %w", err)
		}
		var body struct {
			Meetings []struct {
				UUID string `json:"uuid"`
			} `json:"meetings"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("verify: %w", err)
		}
		live := map[string]bool{}
		for _, m := range body.Meetings {
			live[m.UUID] = true
		}
		for _, u := range uuids {
			if !live[u] {
				missing++
			}
		}
	}
	return missing, nil
}

// driver sends webhooks at a fixed rate, round-robin over users, one at a
// time per user (alternating started and ended of one meeting), so every
// accepted webhook makes exactly one frame per tab of its user.
type driver struct {
	b        *bench
	name     func(int) string // user i's id
	users    int
	tabsOf   []int // healthy tabs per user
	uuids    []string
	live     []bool
	locks    []sync.Mutex
	expected atomic.Int64
	sent     atomic.Int64
	accepted atomic.Int64
	next     atomic.Int64
}

func newDriver(b *bench, users int, tabs []*tab) *driver {
	d := &driver{b: b, name: userID, users: users, tabsOf: make([]int, users), uuids: make([]string, users),
		live: make([]bool, users), locks: make([]sync.Mutex, users)}
	for i, t := range tabs {
		if t != nil {
			d.tabsOf[i%users]++
		}
	}
	return d
}

// one sends the next user's next webhook.
func (d *driver) one(ctx context.Context) {
	u := int(d.next.Add(1)-1) % d.users
	d.locks[u].Lock()
	defer d.locks[u].Unlock()
	event := zoom.EventMeetingStarted
	if d.live[u] {
		event = zoom.EventMeetingEnded
	} else {
		d.uuids[u] = newUUID()
	}
	status, _, err := d.b.send(ctx, webhookBody(event, d.uuids[u], d.name(u), time.Now()))
	d.sent.Add(1)
	if err == nil && status == http.StatusOK {
		d.live[u] = !d.live[u]
		d.accepted.Add(1)
		d.expected.Add(int64(d.tabsOf[u]))
	}
}

// paced sends rate webhooks per second for dur with conc senders.
func (d *driver) paced(ctx context.Context, rate int, dur time.Duration, conc int) time.Duration {
	jobs := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				d.one(ctx)
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	total := int(dur / interval)
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return time.Since(start)
}

// waitFrames waits until the tabs received want frames in all, or timeout.
func waitFrames(tabs []*tab, want int64, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for {
		var got int64
		for _, t := range tabs {
			got += t.frames.Load()
		}
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sumTabs(tabs []*tab, f func(*tab) int64) int64 {
	var n int64
	for _, t := range tabs {
		n += f(t)
	}
	return n
}

// hotTabsPerUser is how many of the slow scenario's extra tabs share a
// user: every webhook for that user makes a frame for each of them.
const hotTabsPerUser = 25

// hotUser names the slow scenario's extra users.
func hotUser(i int) string { return fmt.Sprintf("bench-hot-%04d", i) }

// pushRun connects the tabs, sends at the rate, and reports webhook-to-frame
// latency as the tabs measured it. With hot > 0, hot extra tabs (25 per
// user) get a flood of 100 webhooks per second per user meanwhile; when
// stuck, those tabs never read, so their buffers fill and onair must drop
// them without slowing anyone else.
func pushRun(ctx context.Context, b *bench, name string, hot int, stuck bool) (*report, error) {
	r := newReport(name)
	var lat samples
	rss0 := b.rss()
	drops0 := b.metric(`onair_ws_disconnects_total{reason="slow_consumer"}`)
	tabs, err := b.connectTabs(ctx, b.cfg.tabs, b.cfg.users, lat.add)
	defer closeTabs(tabs)
	if err != nil {
		return nil, err
	}
	rss1 := b.rss()
	hotUsers := (hot + hotTabsPerUser - 1) / hotTabsPerUser
	hotTabs := make([]*tab, hot)
	for i := range hotTabs {
		t := &tab{b: b, user: hotUser(i % max(1, hotUsers)), tinyWindow: true}
		if err := t.connect(ctx); err != nil {
			return nil, fmt.Errorf("hot tab: %w", err)
		}
		if !stuck {
			go t.read()
		}
		hotTabs[i] = t
	}
	defer closeTabs(hotTabs)
	flood := make(chan struct{})
	if hotUsers > 0 {
		fd := newDriver(b, hotUsers, hotTabs)
		fd.name = hotUser
		go func() {
			defer close(flood)
			fd.paced(ctx, 100*hotUsers, b.cfg.duration, 4)
		}()
	} else {
		close(flood)
	}
	d := newDriver(b, b.cfg.users, tabs)
	elapsed := d.paced(ctx, b.cfg.rate, b.cfg.duration, b.cfg.concurrency)
	<-flood
	got := waitFrames(tabs, d.expected.Load(), 10*time.Second)
	rss2 := b.rss()

	r.set("tabs", b.cfg.tabs)
	r.set("users", b.cfg.users)
	if hot > 0 {
		r.set("hot_tabs", hot)
		r.set("hot_tabs_stuck", stuck)
		r.set("slow_consumer_drops", b.metric(`onair_ws_disconnects_total{reason="slow_consumer"}`)-drops0)
	}
	r.set("rate_target", b.cfg.rate)
	r.set("rate_achieved", float64(d.sent.Load())/elapsed.Seconds())
	r.set("webhooks_accepted", d.accepted.Load())
	r.set("frames_expected", d.expected.Load())
	r.set("frames_received", got)
	r.set("frames_lost", d.expected.Load()-got)
	r.set("gaps", sumTabs(tabs, func(t *tab) int64 { return t.gaps.Load() }))
	r.set("duplicates", sumTabs(tabs, func(t *tab) int64 { return t.dups.Load() }))
	q, mx := lat.quantiles(0.5, 0.9, 0.99)
	r.set("latency_p50_ms", q[0])
	r.set("latency_p90_ms", q[1])
	r.set("latency_p99_ms", q[2])
	r.set("latency_max_ms", mx)
	r.set("rss_before_mb", float64(rss0)/(1<<20))
	r.set("rss_connected_mb", float64(rss1)/(1<<20))
	r.set("rss_after_mb", float64(rss2)/(1<<20))
	if b.cfg.tabs > 0 && rss1 > 0 {
		r.set("rss_per_tab_kib", float64(rss1-rss0)/float64(b.cfg.tabs)/1024)
	}
	r.check(d.accepted.Load() == d.sent.Load(), "webhooks not accepted")
	r.check(got == d.expected.Load(), "frames lost")
	r.check(r.values["gaps"] == int64(0) && r.values["duplicates"] == int64(0), "gaps or duplicates")
	return r, nil
}

func runPush(ctx context.Context, b *bench) (*report, error) {
	return pushRun(ctx, b, "push", 0, false)
}

// runSlow runs push twice in one session with the same load, including a
// flood for --m extra tabs: first with those tabs reading, then with them
// stuck. The healthy tabs' p99 must not move, and onair must drop the
// stuck ones with its RSS bounded.
func runSlow(ctx context.Context, b *bench) (*report, error) {
	base, err := pushRun(ctx, b, "slow-baseline", b.cfg.stuck, false)
	if err != nil {
		return nil, err
	}
	with, err := pushRun(ctx, b, "slow", b.cfg.stuck, true)
	if err != nil {
		return nil, err
	}
	with.set("baseline_latency_p99_ms", base.values["latency_p99_ms"])
	if p := base.values["latency_p99_ms"].(float64); p > 0 {
		with.set("p99_ratio", with.values["latency_p99_ms"].(float64)/p)
	}
	with.set("baseline_rss_after_mb", base.values["rss_after_mb"])
	with.failed = append(with.failed, base.failed...)
	return with, nil
}

// runIdle holds idle tabs with pings for --hold and reports the server's
// memory, goroutines and CPU per tab.
func runIdle(ctx context.Context, b *bench) (*report, error) {
	r := newReport("idle")
	g0 := b.metric("go_goroutines")
	rss0 := b.rss()
	tabs, err := b.connectTabs(ctx, b.cfg.tabs, b.cfg.users, nil)
	defer closeTabs(tabs)
	if err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // let connection set-up garbage be collected
	rss1 := b.rss()
	g1 := b.metric("go_goroutines")
	cpu0, t0 := b.cpu(), time.Now()
	select {
	case <-time.After(b.cfg.hold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cpu1, t1 := b.cpu(), time.Now()
	rss2 := b.rss()
	open := 0
	for _, t := range tabs {
		select {
		case <-t.closed:
		default:
			open++
		}
	}
	n := float64(b.cfg.tabs)
	wall := t1.Sub(t0).Seconds()
	r.set("tabs", b.cfg.tabs)
	r.set("hold_s", wall)
	r.set("tabs_open_at_end", open)
	r.set("rss_before_mb", float64(rss0)/(1<<20))
	r.set("rss_connected_mb", float64(rss1)/(1<<20))
	r.set("rss_end_mb", float64(rss2)/(1<<20))
	r.set("rss_per_tab_kib", float64(rss1-rss0)/n/1024)
	r.set("goroutines_per_tab", (g1-g0)/n)
	r.set("cpu_pct_of_one_core", (cpu1-cpu0).Seconds()/wall*100)
	r.set("cpu_us_per_tab_per_s", (cpu1-cpu0).Seconds()*1e6/wall/n)
	r.check(open == b.cfg.tabs, "tabs dropped while idle")
	return r, nil
}
