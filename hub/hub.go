// Package hub fans committed events out to every open tab of their user.
//
// Publish never blocks: each subscription has a bounded queue, and a
// subscriber that lets it fill up is dropped (ReasonSlow) rather than
// slowing anyone else. The hub does no I/O: a subscriber is woken through a
// callback and takes its queued messages with Next.
package hub

import (
	"errors"
	"sync"
	"time"
)

// Message is one frame for one user. Frame is shared by all of the user's
// tabs and must not be modified.
type Message struct {
	Seq      int64
	Type     string
	Frame    []byte
	Received time.Time // when the webhook behind it arrived
}

// Reason says why a subscription was dropped.
type Reason int

const (
	ReasonNone         Reason = iota
	ReasonSlow                // its queue overflowed
	ReasonDeauthorized        // the user deauthorized the app
	ReasonLogout              // the session it was opened with ended
	ReasonShutdown            // the server is stopping
	ReasonResync              // it may have missed events: resume from the log
)

var (
	ErrTooManyTabs = errors.New("too many open tabs for this user")
	ErrClosed      = errors.New("hub closed")
)

// Options bound the hub. Zero values take the defaults noted.
type Options struct {
	MaxTabs       int // subscriptions per user (default 32)
	MaxQueue      int // queued messages per subscription (default 256)
	MaxQueueBytes int // queued bytes per subscription (default 1 MiB)
}

// Hub holds every user's subscriptions.
type Hub struct {
	opts   Options
	mu     sync.RWMutex
	users  map[string][]*Subscription
	closed Reason
	n      int
}

// New returns an empty hub.
func New(opts Options) *Hub {
	if opts.MaxTabs <= 0 {
		opts.MaxTabs = 32
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 256
	}
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = 1 << 20
	}
	return &Hub{opts: opts, users: make(map[string][]*Subscription)}
}

// Subscription is one tab's place in the hub.
type Subscription struct {
	hub  *Hub
	user string
	tag  string
	wake func(Reason)

	mu     sync.Mutex
	queue  []Message
	bytes  int
	reason Reason
	first  bool // the user had no other subscription when this one began
}

// Subscribe adds a subscription for user. wake is called, never under a
// hub lock and never while the caller of Next could miss it, whenever the
// subscription goes from empty to non-empty (with ReasonNone) or is dropped
// (with the reason: a consumer blocked on a write must not wait for it). tag groups
// subscriptions for DropTag (a session id, say).
func (h *Hub) Subscribe(user, tag string, wake func(Reason)) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed != ReasonNone {
		return nil, ErrClosed
	}
	subs := h.users[user]
	if len(subs) >= h.opts.MaxTabs {
		return nil, ErrTooManyTabs
	}
	s := &Subscription{hub: h, user: user, tag: tag, wake: wake, first: len(subs) == 0}
	h.users[user] = append(subs, s)
	h.n++
	return s, nil
}

// First says whether the user had no other subscription when this one
// began: decided under the hub's lock, so of tabs that connect together
// exactly one is first.
func (s *Subscription) First() bool { return s.first }

// Publish queues m for every subscription of user.
func (h *Hub) Publish(user string, m Message) {
	h.mu.RLock()
	subs := h.users[user]
	h.mu.RUnlock()
	// subs is never modified in place (Cancel copies), so it is safe to use unlocked.
	for _, s := range subs {
		s.push(m)
	}
}

// Drop drops every subscription of user.
func (h *Hub) Drop(user string, r Reason) {
	h.dropWhere(user, func(*Subscription) bool { return true }, r)
}

// DropSessions drops user's subscriptions opened with any tag: the
// signed-in browsers, not the host apps' token connections.
func (h *Hub) DropSessions(user string, r Reason) {
	h.dropWhere(user, func(s *Subscription) bool { return s.tag != "" }, r)
}

// DropTag drops user's subscriptions opened with tag.
func (h *Hub) DropTag(user, tag string, r Reason) {
	h.dropWhere(user, func(s *Subscription) bool { return s.tag == tag }, r)
}

func (h *Hub) dropWhere(user string, match func(*Subscription) bool, r Reason) {
	h.mu.RLock()
	subs := h.users[user]
	h.mu.RUnlock()
	for _, s := range subs {
		if match(s) {
			s.drop(r)
		}
	}
}

// DropAll drops every subscription with r; new ones are taken.
func (h *Hub) DropAll(r Reason) {
	h.mu.RLock()
	var all []*Subscription
	for _, subs := range h.users {
		all = append(all, subs...)
	}
	h.mu.RUnlock()
	for _, s := range all {
		s.drop(r)
	}
}

// Close drops every subscription with r and refuses new ones.
func (h *Hub) Close(r Reason) {
	h.mu.Lock()
	h.closed = r
	var all []*Subscription
	for _, subs := range h.users {
		all = append(all, subs...)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.drop(r)
	}
}

// Len returns the number of subscriptions.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.n
}

// Tabs returns the number of subscriptions of user.
func (h *Hub) Tabs(user string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[user])
}

func (s *Subscription) push(m Message) {
	s.mu.Lock()
	if s.reason != ReasonNone {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.hub.opts.MaxQueue || s.bytes+len(m.Frame) > s.hub.opts.MaxQueueBytes {
		s.reason, s.queue, s.bytes = ReasonSlow, nil, 0
		s.mu.Unlock()
		s.wake(ReasonSlow)
		return
	}
	s.queue = append(s.queue, m)
	s.bytes += len(m.Frame)
	first := len(s.queue) == 1
	s.mu.Unlock()
	if first {
		s.wake(ReasonNone)
	}
}

func (s *Subscription) drop(r Reason) {
	s.mu.Lock()
	if s.reason != ReasonNone {
		s.mu.Unlock()
		return
	}
	s.reason, s.queue, s.bytes = r, nil, 0
	s.mu.Unlock()
	s.wake(r)
}

// Next takes every queued message, or the reason the subscription was
// dropped. An empty result with ReasonNone means nothing is pending.
func (s *Subscription) Next() ([]Message, Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue, s.bytes = nil, 0
	return q, s.reason
}

// Pending reports whether Next has something to return.
func (s *Subscription) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0 || s.reason != ReasonNone
}

// Reason returns why the subscription was dropped, or ReasonNone.
func (s *Subscription) Reason() Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// User returns the subscription's user.
func (s *Subscription) User() string { return s.user }

// Cancel removes the subscription from the hub.
func (s *Subscription) Cancel() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.users[s.user]
	for i, x := range subs {
		if x == s {
			// Copy rather than shift: Publish may be reading the old slice.
			rest := make([]*Subscription, 0, len(subs)-1)
			rest = append(append(rest, subs[:i]...), subs[i+1:]...)
			if len(rest) == 0 {
				delete(h.users, s.user)
			} else {
				h.users[s.user] = rest
			}
			h.n--
			return
		}
	}
}
