// Package reconcile keeps "live" true when Zoom's deliveries go missing: it
// asks Zoom's REST API, with each user's own token, which of their meetings
// are live, and repairs the state through the same path as a webhook, so
// tabs get the same frames. Meetings nobody can ask about end as stale.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"onair/store"
	"onair/zoom"
)

// Store is what reconciliation needs of the state.
type Store interface {
	Ingest(ctx context.Context, d store.Delivery) (store.Outcome, error)
	LiveMeetings(ctx context.Context, user string) ([]store.Meeting, error)
	ClaimReconcile(ctx context.Context, user string, gap time.Duration) (bool, error)
	TokenUsers(ctx context.Context) ([]string, error)
	Once(ctx context.Context, name string, fn func(context.Context) error) (bool, error)
	StaleMeetings(ctx context.Context, after time.Duration) ([]store.MeetingInfo, error)
}

// Tokens hands out a user's Zoom access token (refreshed when expired).
type Tokens interface {
	ZoomAccess(ctx context.Context, user string) (string, error)
}

// Config configures a Reconciler. Zero values take the defaults noted.
type Config struct {
	Zoom     *zoom.Client // nil: only stale meetings are ended
	Tokens   Tokens
	Interval time.Duration // every user with a token, this often (5m)
	// ConnectGap is the least time between two reconciliations of a user
	// caused by their first tab connecting (1m).
	ConnectGap time.Duration
	// StaleAfter ends a live meeting with no event for this long and no
	// member whose token could ask Zoom (24h).
	StaleAfter time.Duration
	// Pace is the pause between two users: calls are spread, not bursted
	// (250ms: at most 8 Zoom calls a second for two meetings a user).
	Pace time.Duration
	// WaitingGrace: a meeting Zoom says is not started is ended only once
	// it has been live this long, as Zoom's status lags a fresh start (2m).
	WaitingGrace time.Duration
	Runs         prometheus.Counter
	Repairs      *prometheus.CounterVec // by repair: started, ended, stale
	Logger       *slog.Logger
	Now          func() time.Time
}

// Reconciler runs reconciliations: on a user's first tab, every Interval,
// and never two of one user at once.
type Reconciler struct {
	cfg   Config
	store Store
	kicks chan string

	mu      sync.Mutex
	running map[string]bool
	pause   time.Time // Zoom said 429: no call before this
}

// New returns a reconciler; Run starts it.
func New(cfg Config, st Store) *Reconciler {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Interval, 5*time.Minute)
	def(&cfg.ConnectGap, time.Minute)
	def(&cfg.StaleAfter, 24*time.Hour)
	def(&cfg.Pace, 250*time.Millisecond)
	def(&cfg.WaitingGrace, 2*time.Minute)
	if cfg.Runs == nil {
		cfg.Runs = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
	}
	if cfg.Repairs == nil {
		cfg.Repairs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unused"}, []string{"repair"})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg, store: st, kicks: make(chan string, 4096), running: map[string]bool{}}
}

// Kick asks for a reconciliation of user, whose first tab just connected.
// It never blocks: a welcome must not wait, and when the queue is full the
// periodic pass covers the user.
func (r *Reconciler) Kick(user string) {
	select {
	case r.kicks <- user:
	default:
	}
}

// Run serves kicks and runs the periodic pass until ctx ends, and returns
// once neither runs.
func (r *Reconciler) Run(ctx context.Context) {
	kicks := make(chan struct{})
	go func() { defer close(kicks); r.serveKicks(ctx) }()
	defer func() { <-kicks }()
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// One pass at a time across the nodes sharing the database: a node
		// that finds another's pass running skips its turn.
		ran, err := r.store.Once(ctx, "reconcile", r.pass)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("reconcile", "err", err)
		} else if !ran {
			r.cfg.Logger.Debug("reconcile: another node's pass is running; skipping this one")
		}
	}
}

// pass ends stale meetings and checks every user with a Zoom token.
func (r *Reconciler) pass(ctx context.Context) error {
	r.endStale(ctx)
	if r.cfg.Zoom == nil {
		return nil
	}
	users, err := r.store.TokenUsers(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	for _, u := range users {
		if ctx.Err() != nil {
			return nil
		}
		r.User(ctx, u)
		r.sleep(ctx, r.cfg.Pace)
	}
	return nil
}

func (r *Reconciler) serveKicks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-r.kicks:
			if r.cfg.Zoom == nil {
				continue
			}
			ok, err := r.store.ClaimReconcile(ctx, u, r.cfg.ConnectGap)
			if err != nil || !ok {
				continue // checked less than a minute ago (or unknown)
			}
			r.User(ctx, u)
			r.sleep(ctx, r.cfg.Pace)
		}
	}
}

// User reconciles one user's live meetings with what Zoom says. It returns
// at once if that user's reconciliation is already running.
func (r *Reconciler) User(ctx context.Context, user string) {
	r.mu.Lock()
	if r.running[user] {
		r.mu.Unlock()
		return
	}
	r.running[user] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, user)
		r.mu.Unlock()
	}()
	if err := r.user(ctx, user); err != nil && ctx.Err() == nil {
		r.cfg.Logger.Info("reconcile", "user", user, "err", err)
	}
}

func (r *Reconciler) user(ctx context.Context, user string) error {
	access, err := r.cfg.Tokens.ZoomAccess(ctx, user)
	if err != nil {
		return nil // no token (or a revoked grant): nothing to ask Zoom with
	}
	r.cfg.Runs.Inc()
	held, err := r.store.LiveMeetings(ctx, user)
	if err != nil {
		return err
	}
	isLive := map[string]bool{}
	for _, m := range held {
		isLive[m.UUID] = true
	}
	// Scheduled meetings Zoom lists as live that onair missed.
	if err := r.wait(ctx); err != nil {
		return err
	}
	live, err := r.cfg.Zoom.LiveMeetings(ctx, access, user)
	var ze *zoom.Error
	switch {
	case errors.As(err, &ze) && ze.Status == http.StatusTooManyRequests:
		return r.note429(err)
	case err != nil:
		// The held meetings can still be checked one by one.
		r.cfg.Logger.Info("reconcile: live meetings could not be listed", "user", user, "err", err)
	}
	for _, m := range live {
		if m.UUID == "" || isLive[m.UUID] || (m.HostID != "" && m.HostID != user) {
			continue
		}
		if err := r.start(ctx, m, user); err != nil {
			return err
		}
	}
	// Meetings onair holds live for their host: still live at Zoom?
	for _, h := range held {
		if h.Role != store.RoleHost || h.ID == "" {
			continue
		}
		if err := r.wait(ctx); err != nil {
			return err
		}
		m, err := r.cfg.Zoom.GetMeeting(ctx, access, h.ID)
		switch {
		case errors.As(err, &ze) && ze.Status == http.StatusNotFound:
			m = zoom.Meeting{Status: "deleted"}
		case errors.As(err, &ze) && ze.Status == http.StatusTooManyRequests:
			return r.note429(err) // Zoom wants a pause: the rest of the run waits for the next one
		case err != nil:
			r.cfg.Logger.Info("reconcile: a meeting could not be checked", "user", user, "err", err)
			continue // one failure does not leave the user's other meetings unchecked
		}
		liveFor := r.cfg.Now().Sub(h.StartTime.Time)
		var end bool
		switch {
		case m.Status == "started" && (m.UUID == "" || m.UUID == h.UUID):
		case m.Status == "started":
			end = true // the number is live with another occurrence: this one is over
		default:
			end = liveFor > r.cfg.WaitingGrace // Zoom's status lags a fresh start
		}
		if end {
			if err := r.end(ctx, store.MeetingInfo{UUID: h.UUID, HostID: user}, "ended"); err != nil {
				return err
			}
		}
	}
	return nil
}

// start applies a live meeting Zoom listed through the webhook path's store
// call, so the frames are the ones a webhook would have caused.
func (r *Reconciler) start(ctx context.Context, m zoom.Meeting, host string) error {
	now := r.cfg.Now().UTC()
	info := store.MeetingInfo{UUID: m.UUID, Topic: m.Topic, HostID: host, Type: m.Type,
		Duration: m.Duration, Timezone: m.Timezone, Rank: 2, StartRank: 2, StartTime: zoom.ParseTime(m.StartTime)}
	if m.ID != 0 {
		info.ID = m.Number()
	}
	if info.StartTime.IsZero() {
		info.StartTime, info.StartRank = now, 0
	}
	return r.apply(ctx, "started", store.Delivery{Event: "reconcile.started", Key: []string{"reconcile.started", m.UUID},
		Kind: store.KindStart, At: now, Received: now, Meeting: info})
}

// end ends a meeting onair holds live. The delivery carries only what
// identifies it and the end time, at the lowest rank: what onair knew of
// the meeting (a participant's join may have told more than Zoom's answer
// now does) stays as it was.
func (r *Reconciler) end(ctx context.Context, m store.MeetingInfo, repair string) error {
	now := r.cfg.Now().UTC()
	info := store.MeetingInfo{UUID: m.UUID, HostID: m.HostID, EndTime: now}
	return r.apply(ctx, repair, store.Delivery{Event: "reconcile." + repair, Key: []string{"reconcile." + repair, m.UUID},
		Kind: store.KindEnd, At: now, Received: now, Meeting: info})
}

func (r *Reconciler) apply(ctx context.Context, repair string, d store.Delivery) error {
	out, err := r.store.Ingest(ctx, d)
	if err != nil {
		return err
	}
	if out == store.OutcomeAccepted {
		r.cfg.Repairs.WithLabelValues(repair).Inc()
		r.cfg.Logger.Info("reconcile: repaired a live meeting", "repair", repair, "user", d.Meeting.HostID)
	}
	return nil
}

// endStale ends live meetings nobody can ask Zoom about, after StaleAfter
// without an event.
func (r *Reconciler) endStale(ctx context.Context) {
	stale, err := r.store.StaleMeetings(ctx, r.cfg.StaleAfter)
	if err != nil {
		r.cfg.Logger.Warn("reconcile: stale meetings", "err", err)
		return
	}
	for _, m := range stale {
		r.cfg.Logger.Warn("ending a stale meeting: live with no event and no Zoom token to ask",
			"meeting", m.UUID, "after", r.cfg.StaleAfter.String())
		if err := r.end(ctx, m, "stale"); err != nil {
			r.cfg.Logger.Warn("reconcile: end a stale meeting", "err", err)
			return
		}
	}
}

// note429 pauses all calls for Zoom's Retry-After (its rate limits are per
// account, shared by every app); it returns err when the run must stop.
func (r *Reconciler) note429(err error) error {
	var ze *zoom.Error
	if errors.As(err, &ze) && ze.Status == http.StatusTooManyRequests {
		r.mu.Lock()
		r.pause = r.cfg.Now().Add(max(ze.RetryAfter, time.Second))
		r.mu.Unlock()
	}
	return err
}

// wait holds a call back while Zoom asked for a pause.
func (r *Reconciler) wait(ctx context.Context) error {
	r.mu.Lock()
	until := r.pause
	r.mu.Unlock()
	if d := until.Sub(r.cfg.Now()); d > 0 {
		return r.sleep(ctx, d)
	}
	return nil
}

func (r *Reconciler) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
