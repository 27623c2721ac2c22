package hub_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onair/hub"
)

// tab is a test subscriber: it counts its wake-ups and can wait for one.
type tab struct {
	*hub.Subscription
	wakes atomic.Int64
	woken chan struct{} // one pending wake-up, as a socket's flusher would keep
}

func (tb *tab) wake(hub.Reason) {
	tb.wakes.Add(1)
	select {
	case tb.woken <- struct{}{}:
	default:
	}
}

func MustSubscribe(t *testing.T, h *hub.Hub, user, tag string) *tab {
	t.Helper()
	tb := &tab{woken: make(chan struct{}, 1)}
	s, err := h.Subscribe(user, tag, tb.wake)
	if err != nil {
		t.Fatalf("subscribe %s/%s: %v", user, tag, err)
	}
	tb.Subscription = s
	t.Cleanup(s.Cancel)
	return tb
}

func msg(seq int64) hub.Message {
	return hub.Message{Seq: seq, Type: "meeting.started", Frame: fmt.Appendf(nil, `{"seq":%d}`, seq)}
}

func publish(h *hub.Hub, user string, seqs ...int64) {
	for _, s := range seqs {
		h.Publish(user, msg(s))
	}
}

// next takes what is queued and fails on a drop.
func next(t *testing.T, tb *tab) []int64 {
	t.Helper()
	msgs, reason := tb.Next()
	if reason != hub.ReasonNone {
		t.Fatalf("%s: dropped (%v), want messages", tb.User(), reason)
	}
	var got []int64
	for _, m := range msgs {
		if want := fmt.Sprintf(`{"seq":%d}`, m.Seq); string(m.Frame) != want {
			t.Fatalf("%s: frame %q for seq %d, want %q", tb.User(), m.Frame, m.Seq, want)
		}
		got = append(got, m.Seq)
	}
	return got
}

func wantDropped(t *testing.T, tb *tab, want hub.Reason) {
	t.Helper()
	if got := tb.Reason(); got != want {
		t.Fatalf("%s: reason %v, want %v", tb.User(), got, want)
	}
	if !tb.Pending() {
		t.Fatalf("%s: dropped but not pending", tb.User())
	}
	msgs, got := tb.Next()
	if got != want || len(msgs) != 0 {
		t.Fatalf("%s: Next got %d messages and %v, want none and %v", tb.User(), len(msgs), got, want)
	}
}

func TestFanOut(t *testing.T) {
	h := hub.New(hub.Options{})
	alice1, alice2 := MustSubscribe(t, h, "alice", "s1"), MustSubscribe(t, h, "alice", "s2")
	bob := MustSubscribe(t, h, "bob", "s3")
	idle := MustSubscribe(t, h, "carol", "s4")

	publish(h, "alice", 1, 2, 3)
	publish(h, "bob", 1)
	publish(h, "nobody", 1) // a user without tabs: nothing happens

	for _, tb := range []*tab{alice1, alice2} {
		if got, want := next(t, tb), []int64{1, 2, 3}; !slices.Equal(got, want) {
			t.Fatalf("alice's tab: got %v, want %v", got, want)
		}
	}
	if got, want := next(t, bob), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("bob: got %v, want %v", got, want)
	}
	if got := next(t, idle); len(got) != 0 {
		t.Fatalf("carol: got %v, want nothing", got)
	}
	if idle.Pending() || idle.wakes.Load() != 0 {
		t.Fatalf("carol: pending %v after %d wakes, want neither", idle.Pending(), idle.wakes.Load())
	}
	if got, want := h.Len(), 4; got != want {
		t.Fatalf("subscriptions: got %d, want %d", got, want)
	}
	if got, want := h.Tabs("alice"), 2; got != want {
		t.Fatalf("alice's tabs: got %d, want %d", got, want)
	}
}

func TestWake(t *testing.T) {
	h := hub.New(hub.Options{})
	tb := MustSubscribe(t, h, "alice", "")
	if tb.Pending() {
		t.Fatal("pending before any publish")
	}
	publish(h, "alice", 1, 2, 3)
	if got, want := tb.wakes.Load(), int64(1); got != want {
		t.Fatalf("wakes after three messages: got %d, want %d (empty to non-empty only)", got, want)
	}
	if !tb.Pending() {
		t.Fatal("not pending after a publish")
	}
	if got, want := next(t, tb), []int64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if tb.Pending() {
		t.Fatal("pending after Next took everything")
	}
	publish(h, "alice", 4)
	if got, want := tb.wakes.Load(), int64(2); got != want {
		t.Fatalf("wakes after draining and one more message: got %d, want %d", got, want)
	}
	if got, want := next(t, tb), []int64{4}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestOrder(t *testing.T) {
	h := hub.New(hub.Options{MaxQueue: 1000})
	tb := MustSubscribe(t, h, "alice", "")
	var got []int64
	for i := range int64(500) {
		publish(h, "alice", i+1)
		if i%7 == 0 { // take in uneven bites
			got = append(got, next(t, tb)...)
		}
	}
	got = append(got, next(t, tb)...)
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("message %d: got seq %d, want %d", i, seq, i+1)
		}
	}
	if len(got) != 500 {
		t.Fatalf("got %d messages, want 500", len(got))
	}
}

func TestMaxTabs(t *testing.T) {
	h := hub.New(hub.Options{MaxTabs: 2})
	MustSubscribe(t, h, "alice", "")
	second := MustSubscribe(t, h, "alice", "")
	if _, err := h.Subscribe("alice", "", func(hub.Reason) {}); !errors.Is(err, hub.ErrTooManyTabs) {
		t.Fatalf("third tab: got %v, want ErrTooManyTabs", err)
	}
	MustSubscribe(t, h, "bob", "") // another user has tabs of their own
	second.Cancel()
	third := MustSubscribe(t, h, "alice", "")
	publish(h, "alice", 1)
	if got, want := next(t, third), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("tab opened after a cancel: got %v, want %v", got, want)
	}
}

func TestSlowSubscriber(t *testing.T) {
	t.Run("ByCount", func(t *testing.T) {
		const maxQueue = 4
		h := hub.New(hub.Options{MaxQueue: maxQueue})
		slow, healthy := MustSubscribe(t, h, "alice", ""), MustSubscribe(t, h, "alice", "")
		var got []int64
		for i := range int64(10) {
			publish(h, "alice", i+1)
			got = append(got, next(t, healthy)...)
			if i+1 == maxQueue {
				// A full queue is still fine …
				if r := slow.Reason(); r != hub.ReasonNone {
					t.Fatalf("slow tab with a full queue: reason %v, want none", r)
				}
			}
		}
		// … one more message is not.
		wantDropped(t, slow, hub.ReasonSlow)
		if got, want := slow.wakes.Load(), int64(2); got != want {
			t.Fatalf("slow tab's wakes: got %d, want %d (first message, drop)", got, want)
		}
		if got, want := got, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(got, want) {
			t.Fatalf("healthy tab: got %v, want %v", got, want)
		}
		// Dropped stays dropped: later messages are not queued.
		publish(h, "alice", 11)
		wantDropped(t, slow, hub.ReasonSlow)
		if got, want := slow.wakes.Load(), int64(2); got != want {
			t.Fatalf("slow tab's wakes after the drop: got %d, want %d", got, want)
		}
	})

	t.Run("ByBytes", func(t *testing.T) {
		h := hub.New(hub.Options{MaxQueue: 100, MaxQueueBytes: 100})
		slow, healthy := MustSubscribe(t, h, "alice", ""), MustSubscribe(t, h, "alice", "")
		big := hub.Message{Seq: 1, Frame: make([]byte, 60)}
		h.Publish("alice", big)
		healthy.Next()
		big.Seq = 2
		h.Publish("alice", big)
		wantDropped(t, slow, hub.ReasonSlow)
		msgs, reason := healthy.Next()
		if reason != hub.ReasonNone || len(msgs) != 1 || msgs[0].Seq != 2 {
			t.Fatalf("healthy tab: got %d messages, %v; want seq 2", len(msgs), reason)
		}
	})
}

func TestDrop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drop   func(h *hub.Hub)
		reason hub.Reason
		gone   []string // which of alice/s1, alice/s2, bob/s1 are dropped
	}{
		{"Drop", func(h *hub.Hub) { h.Drop("alice", hub.ReasonDeauthorized) }, hub.ReasonDeauthorized, []string{"alice/s1", "alice/s2"}},
		{"DropTag", func(h *hub.Hub) { h.DropTag("alice", "s1", hub.ReasonLogout) }, hub.ReasonLogout, []string{"alice/s1"}},
		{"DropTagOfOtherUser", func(h *hub.Hub) { h.DropTag("carol", "s1", hub.ReasonLogout) }, hub.ReasonLogout, nil},
		{"DropUnknownUser", func(h *hub.Hub) { h.Drop("carol", hub.ReasonDeauthorized) }, hub.ReasonDeauthorized, nil},
		{"Close", func(h *hub.Hub) { h.Close(hub.ReasonShutdown) }, hub.ReasonShutdown, []string{"alice/s1", "alice/s2", "bob/s1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hub.New(hub.Options{})
			tabs := map[string]*tab{
				"alice/s1": MustSubscribe(t, h, "alice", "s1"),
				"alice/s2": MustSubscribe(t, h, "alice", "s2"),
				"bob/s1":   MustSubscribe(t, h, "bob", "s1"),
			}
			publish(h, "alice", 1)
			tc.drop(h)
			tc.drop(h) // a second drop changes nothing
			publish(h, "alice", 2)
			publish(h, "bob", 2)
			for name, tb := range tabs {
				if slices.Contains(tc.gone, name) {
					wantDropped(t, tb, tc.reason)
					wakes := int64(2) // the first message, the drop
					if name == "bob/s1" {
						wakes = 1 // bob had no message before the drop
					}
					if got := tb.wakes.Load(); got != wakes {
						t.Fatalf("%s: wakes %d, want %d", name, got, wakes)
					}
					continue
				}
				want := []int64{1, 2}
				if name == "bob/s1" {
					want = []int64{2}
				}
				if got := next(t, tb); !slices.Equal(got, want) {
					t.Fatalf("%s: got %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestClose(t *testing.T) {
	h := hub.New(hub.Options{})
	tb := MustSubscribe(t, h, "alice", "")
	h.Close(hub.ReasonShutdown)
	wantDropped(t, tb, hub.ReasonShutdown)
	if _, err := h.Subscribe("alice", "", func(hub.Reason) {}); !errors.Is(err, hub.ErrClosed) {
		t.Fatalf("subscribe after close: got %v, want ErrClosed", err)
	}
	if _, err := h.Subscribe("bob", "", func(hub.Reason) {}); !errors.Is(err, hub.ErrClosed) {
		t.Fatalf("subscribe of a new user after close: got %v, want ErrClosed", err)
	}
	publish(h, "alice", 1) // does not panic, queues nothing
	wantDropped(t, tb, hub.ReasonShutdown)
}

func TestCancel(t *testing.T) {
	h := hub.New(hub.Options{})
	a, b := MustSubscribe(t, h, "alice", ""), MustSubscribe(t, h, "alice", "")
	a.Cancel()
	a.Cancel() // twice is harmless
	if got, want := h.Tabs("alice"), 1; got != want {
		t.Fatalf("tabs after cancel: got %d, want %d", got, want)
	}
	if got, want := h.Len(), 1; got != want {
		t.Fatalf("subscriptions after cancel: got %d, want %d", got, want)
	}
	publish(h, "alice", 1)
	if a.Pending() || a.wakes.Load() != 0 {
		t.Fatal("cancelled tab: got a message")
	}
	if got, want := next(t, b), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("other tab: got %v, want %v", got, want)
	}
	b.Cancel()
	if got, want := h.Tabs("alice"), 0; got != want {
		t.Fatalf("tabs after cancelling all: got %d, want %d", got, want)
	}
	if got, want := h.Len(), 0; got != want {
		t.Fatalf("subscriptions after cancelling all: got %d, want %d", got, want)
	}
}

// TestWakeOutsideLocks: a wake callback may call back into the hub (a
// socket cancels its subscription when dropped) without deadlocking.
func TestWakeOutsideLocks(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(h *hub.Hub)
	}{
		{"Slow", func(h *hub.Hub) { publish(h, "alice", 1, 2) }},
		{"Drop", func(h *hub.Hub) { h.Drop("alice", hub.ReasonDeauthorized) }},
		{"DropTag", func(h *hub.Hub) { h.DropTag("alice", "s", hub.ReasonLogout) }},
		{"Close", func(h *hub.Hub) { h.Close(hub.ReasonShutdown) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hub.New(hub.Options{MaxQueue: 1})
			var sub *hub.Subscription
			var mu sync.Mutex
			cancelled := make(chan struct{})
			s, err := h.Subscribe("alice", "s", func(hub.Reason) {
				mu.Lock()
				defer mu.Unlock()
				if sub.Reason() != hub.ReasonNone {
					sub.Cancel()
					h.Tabs("alice")
					h.Publish("alice", msg(99))
					close(cancelled)
				}
			})
			if err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			mu.Lock()
			sub = s
			mu.Unlock()
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.drop(h)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("drop did not return: wake called under a lock")
			}
			<-cancelled
			if got, want := h.Tabs("alice"), 0; got != want {
				t.Fatalf("tabs after the wake cancelled: got %d, want %d", got, want)
			}
		})
	}
}

// TestChat is modelled on coder/websocket's chat example: users × tabs,
// concurrent publishers per user sending random messages; every tab sees
// every message of its user, each publisher's in the order published, and
// never another user's.
func TestChat(t *testing.T) {
	const users, tabsPerUser, publishersPerUser, messages = 8, 4, 2, 200
	h := hub.New(hub.Options{MaxQueue: publishersPerUser * messages, MaxQueueBytes: 64 << 20})

	type received struct {
		user string
		msgs []hub.Message
	}
	results := make(chan received, users*tabsPerUser)
	var readers sync.WaitGroup
	for u := range users {
		user := fmt.Sprintf("user-%d", u)
		for range tabsPerUser {
			tb := MustSubscribe(t, h, user, "")
			readers.Go(func() {
				var got []hub.Message
				for len(got) < publishersPerUser*messages {
					select {
					case <-tb.woken:
					case <-time.After(20 * time.Second):
						t.Errorf("%s: no wake-up after %d messages", user, len(got))
						results <- received{user, got}
						return
					}
					msgs, reason := tb.Next()
					if reason != hub.ReasonNone {
						t.Errorf("%s: dropped (%v) after %d messages", user, reason, len(got))
						break
					}
					got = append(got, msgs...)
				}
				results <- received{user, got}
			})
		}
	}

	// What each publisher sent, for comparing.
	sent := make(map[string][][]byte)
	var mu sync.Mutex
	var publishers sync.WaitGroup
	for u := range users {
		user := fmt.Sprintf("user-%d", u)
		for p := range publishersPerUser {
			publishers.Go(func() {
				var mine [][]byte
				for i := range messages {
					frame := fmt.Appendf(nil, "%s|%d|%d|%x", user, p, i, rand.Uint64())
					mine = append(mine, frame)
					// Seq says who sent it: publisher p's i-th message.
					h.Publish(user, hub.Message{Seq: int64(p*messages + i), Type: "chat", Frame: frame})
					if rand.IntN(10) == 0 {
						time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
					}
				}
				mu.Lock()
				sent[fmt.Sprintf("%s|%d", user, p)] = mine
				mu.Unlock()
			})
		}
	}
	publishers.Wait()
	readers.Wait()
	close(results)

	n := 0
	for r := range results {
		n++
		if got, want := len(r.msgs), publishersPerUser*messages; got != want {
			t.Fatalf("%s: got %d messages, want %d", r.user, got, want)
		}
		next := make([]int, publishersPerUser) // the index expected next from each publisher
		for _, m := range r.msgs {
			p, i := int(m.Seq)/messages, int(m.Seq)%messages
			want := sent[fmt.Sprintf("%s|%d", r.user, p)]
			if want == nil {
				t.Fatalf("%s: got %q, from no publisher of theirs", r.user, m.Frame)
			}
			if i != next[p] || string(m.Frame) != string(want[i]) {
				t.Fatalf("%s: got %q from publisher %d, want %q", r.user, m.Frame, p, want[next[p]])
			}
			next[p]++
		}
	}
	if got, want := n, users*tabsPerUser; got != want {
		t.Fatalf("tabs that finished: got %d, want %d", got, want)
	}
}

// TestChurn publishes while tabs come and go and users are dropped: run
// under -race, it checks the hub's locking; every tab that stays
// subscribed sees its user's messages in order.
func TestChurn(t *testing.T) {
	h := hub.New(hub.Options{MaxTabs: 64, MaxQueue: 1 << 16})
	const users, rounds = 4, 300
	stable := make([]*tab, users)
	for u := range users {
		stable[u] = MustSubscribe(t, h, fmt.Sprintf("user-%d", u), "stable")
	}
	var wg sync.WaitGroup
	for u := range users {
		user := fmt.Sprintf("user-%d", u)
		wg.Go(func() { // the publisher
			for i := range rounds {
				h.Publish(user, msg(int64(i+1)))
			}
		})
		wg.Go(func() { // tabs opening and closing
			for range rounds / 3 {
				s, err := h.Subscribe(user, "churn", func(hub.Reason) {})
				if err != nil {
					t.Errorf("subscribe: %v", err)
					return
				}
				s.Next()
				s.Cancel()
			}
		})
		wg.Go(func() { // sessions ending
			for range rounds / 10 {
				h.DropTag(user, "churn", hub.ReasonLogout)
				h.Tabs(user)
				h.Len()
			}
		})
	}
	wg.Wait()
	for u, tb := range stable {
		if got, want := next(t, tb), upTo(rounds); !slices.Equal(got, want) {
			t.Fatalf("user-%d's stable tab: got %d messages, want %d in order", u, len(got), len(want))
		}
	}
	h.Close(hub.ReasonShutdown)
	for _, tb := range stable {
		wantDropped(t, tb, hub.ReasonShutdown)
	}
}

func upTo(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(i + 1)
	}
	return s
}

// Of tabs that subscribe together, exactly one is the user's first; after
// they all left, the next one is first again.
func TestFirstSubscription(t *testing.T) {
	h := hub.New(hub.Options{MaxTabs: 64})
	subs := make([]*hub.Subscription, 32)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Go(func() {
			s, err := h.Subscribe("u", "", func(hub.Reason) {})
			if err != nil {
				t.Error(err)
			}
			subs[i] = s
		})
	}
	wg.Wait()
	first := 0
	for _, s := range subs {
		if s.First() {
			first++
		}
	}
	if first != 1 {
		t.Fatalf("%d first subscriptions among 32 at once, want 1", first)
	}
	for _, s := range subs {
		s.Cancel()
	}
	if s, _ := h.Subscribe("u", "", func(hub.Reason) {}); !s.First() {
		t.Fatal("the first subscription after all left is not first")
	}
}
