package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"onair/web"
	"onair/zoom"
)

// TestCrashKeepsAcknowledgedWebhooks (CONTRACT §2: "200 is returned only
// after the event is durably committed"): webhooks flow from several
// keep-alive senders while the process is killed with SIGKILL again and
// again on the same database. Every delivery that got a 200 must be in the
// users' logs afterwards, once, with seq gap-free.
func TestCrashKeepsAcknowledgedWebhooks(t *testing.T) {
	const (
		senders        = 4
		usersPerSender = 2
		kills          = 12
		maxPairs       = 300 // per user: the whole log must stay resumable (1000 events)
	)
	dir := t.TempDir()
	db := filepath.Join(dir, "onair.db")
	secret, tokenSecret := []byte("crash-webhook-secret"), []byte("crash-token-secret")
	env := cleanEnv("ZOOM_WEBHOOK_SECRET_TOKEN="+string(secret), "ONAIR_TOKEN_SECRET="+string(tokenSecret))
	args := []string{"--addr", "127.0.0.1:0", "--db", db, "--shutdown-drain", "0s"}

	var users []string
	for i := range senders * usersPerSender {
		users = append(users, fmt.Sprintf("crash-user-%d", i))
	}
	tokens := map[string]string{}
	for _, u := range users {
		tok, err := web.MintToken(tokenSecret, u, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tokens[u] = tok
	}

	// Killed while creating and migrating a new database, a few times.
	for range 3 {
		p := launchOnair(t, dir, env, args...)
		time.Sleep(time.Duration(rand.IntN(120)) * time.Millisecond)
		p.kill()
	}

	// First full start: each user connects once (so they are known) and learns its epoch.
	srv := startOnair(t, dir, env, args...)
	epochs := map[string]string{}
	for _, u := range users {
		tab := openTab(t, srv.Addr, tokens[u], nil)
		epochs[u] = tab.mustNext("welcome").Epoch
		tab.conn.CloseNow()
	}

	type delivery struct{ user, uuid, event string }
	var (
		target   atomic.Pointer[string] // the webhook URL; nil while the server is down
		mu       sync.Mutex
		acked    []delivery
		sent     = map[string]string{} // uuid → host, for every uuid ever sent
		attempts atomic.Int64
		errs     atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	setTarget := func(p *onairProc) {
		if p == nil {
			target.Store(nil)
			return
		}
		u := p.url("/webhooks/zoom")
		target.Store(&u)
	}
	setTarget(srv)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// deliver sends one delivery until it is acknowledged, as Zoom retries:
	// the same body, signed afresh. False when the test stops first.
	deliver := func(client *http.Client, d delivery, body []byte) bool {
		for !stopped() {
			url := target.Load()
			if url == nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			attempts.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			status, _, err := postWebhook(ctx, client, *url, secret, body)
			cancel()
			if err == nil && status == http.StatusOK {
				mu.Lock()
				acked = append(acked, d)
				mu.Unlock()
				return true
			}
			if err == nil && status != http.StatusServiceUnavailable {
				t.Errorf("%s %s: status %d, want 200 or 503", d.event, d.uuid, status)
				return false
			}
			errs.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
		return false
	}
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
			defer client.CloseIdleConnections()
			mine := users[s*usersPerSender : (s+1)*usersPerSender]
			for n := 0; n < maxPairs*usersPerSender && !stopped(); n++ {
				user := mine[n%usersPerSender]
				uuid := fmt.Sprintf("crash/%d/%d==", s, n) // shaped like Zoom's, with '/' and '='
				mu.Lock()
				sent[uuid] = user
				mu.Unlock()
				if !deliver(client, delivery{user, uuid, zoom.EventMeetingStarted},
					meetingBody(zoom.EventMeetingStarted, uuid, user, time.Now())) {
					return
				}
				if !deliver(client, delivery{user, uuid, zoom.EventMeetingEnded},
					meetingBody(zoom.EventMeetingEnded, uuid, user, time.Now())) {
					return
				}
			}
		}()
	}

	// Kill at random moments: mostly while webhooks are being answered,
	// sometimes during start-up itself (opening, migrating, sweeping).
	for k := range kills {
		if k%4 == 3 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(50+rand.IntN(450)) * time.Millisecond)
		}
		setTarget(nil)
		srv.kill()
		if k%3 == 2 {
			p := launchOnair(t, dir, env, args...)
			time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
			p.kill()
		}
		restart := args
		if k%2 == 1 { // both meanings of durable (CONTRACT §1 ONAIR_DB_SYNC) must hold
			restart = append(append([]string{}, args...), "--db-sync", "full")
		}
		srv = startOnair(t, dir, env, restart...)
		setTarget(srv)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	setTarget(nil)
	srv.kill()
	t.Logf("%d deliveries acknowledged in %d attempts (%d failed or refused) across %d kills",
		len(acked), attempts.Load(), errs.Load(), kills)
	if len(acked) < 20 {
		t.Fatalf("only %d deliveries were acknowledged: the test exercised too little", len(acked))
	}

	// Once more, and read every user's whole log.
	srv = startOnair(t, dir, env, args...)
	if code, body := httpGet(t, srv.url("/readyz")); code != http.StatusOK {
		t.Fatalf("/readyz after the crashes: got %d %s, want 200", code, body)
	}
	want := map[string]map[string]map[string]bool{} // user → event → uuid
	for _, d := range acked {
		if want[d.user] == nil {
			want[d.user] = map[string]map[string]bool{}
		}
		if want[d.user][d.event] == nil {
			want[d.user][d.event] = map[string]bool{}
		}
		want[d.user][d.event][d.uuid] = true
	}
	for _, u := range users {
		t.Run(u, func(t *testing.T) {
			snap := openTab(t, srv.Addr, tokens[u], nil)
			w := snap.mustNext("welcome")
			if got, want := w.Epoch, epochs[u]; got != want {
				t.Fatalf("epoch: got %q, want %q (the same database)", got, want)
			}
			newest := w.Seq
			live := map[string]bool{}
			for _, m := range w.Meetings {
				live[m.UUID] = true
			}
			snap.conn.CloseNow()

			tab := openTab(t, srv.Addr, tokens[u], &position{epochs[u], 0})
			if w := tab.mustNext("welcome"); !w.Resumed || w.Seq != 0 {
				t.Fatalf("welcome from seq 0: got resumed=%v seq=%d, want the whole log replayed", w.Resumed, w.Seq)
			}
			seen := map[string]map[string]bool{zoom.EventMeetingStarted: {}, zoom.EventMeetingEnded: {}}
			for seq := int64(1); seq <= newest; seq++ {
				f, err := tab.next(15 * time.Second)
				if err != nil {
					t.Fatalf("reading seq %d of %d: %v", seq, newest, err)
				}
				if f.Seq != seq || f.Epoch != epochs[u] {
					t.Fatalf("frame %d: got seq %d epoch %q, want seq %d epoch %q (gap-free, no duplicate)", seq, f.Seq, f.Epoch, seq, epochs[u])
				}
				if f.Meeting == nil || (f.Type != zoom.EventMeetingStarted && f.Type != zoom.EventMeetingEnded) {
					t.Fatalf("frame %d: got %+v, want meeting.started or meeting.ended", seq, f)
				}
				uuid := f.Meeting.UUID
				mu.Lock()
				host, ok := sent[uuid]
				mu.Unlock()
				if !ok || host != u || f.Meeting.HostID != u {
					t.Fatalf("frame %d: meeting %q (host %q) was never sent for %s", seq, uuid, f.Meeting.HostID, u)
				}
				if seen[f.Type][uuid] {
					t.Fatalf("frame %d: a second %s for %q", seq, f.Type, uuid)
				}
				if f.Type == zoom.EventMeetingEnded && !seen[zoom.EventMeetingStarted][uuid] {
					t.Fatalf("frame %d: meeting.ended for %q before its meeting.started", seq, uuid)
				}
				seen[f.Type][uuid] = true
			}
			for _, event := range []string{zoom.EventMeetingStarted, zoom.EventMeetingEnded} {
				var lost []string
				for uuid := range want[u][event] {
					if !seen[event][uuid] {
						lost = append(lost, uuid)
					}
				}
				if len(lost) > 0 {
					sort.Strings(lost)
					t.Errorf("%d acknowledged %s deliveries are not in the log, e.g. %s", len(lost), event, strings.Join(lost[:min(len(lost), 10)], ", "))
				}
			}
			for uuid := range seen[zoom.EventMeetingStarted] {
				if got, want := live[uuid], !seen[zoom.EventMeetingEnded][uuid]; got != want {
					t.Errorf("meeting %q: live in the snapshot %v, want %v", uuid, got, want)
				}
			}
			if got, want := len(live), len(seen[zoom.EventMeetingStarted])-len(seen[zoom.EventMeetingEnded]); got != want {
				t.Errorf("snapshot: %d live meetings, want %d", got, want)
			}
		})
	}
	srv.signal(syscall.SIGTERM)
	if got, want := srv.wait(30*time.Second), 0; got != want {
		t.Fatalf("exit code after SIGTERM: got %d, want %d", got, want)
	}
}
