// Package dispatch delivers bot requests and their notices from the store's
// durable outbox to the operator's bot launcher: signed, retried with
// backoff (honouring Retry-After), never sent late, given up with a reason.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"onair/store"
	"onair/zoom"
)

// Store is what the dispatcher needs of the state.
type Store interface {
	DueOutbox(ctx context.Context, limit int, skip map[int64]bool) ([]store.OutboxItem, time.Time, error)
	SaveOutboxBody(ctx context.Context, n int64, body, detail string) error
	OutboxRetry(ctx context.Context, n int64, at time.Time, lastErr string) error
	OutboxDelivered(ctx context.Context, it store.OutboxItem) error
	OutboxGiveUp(ctx context.Context, it store.OutboxItem, reason string) error
	OutboxCancelUnsent(ctx context.Context, it store.OutboxItem, reason string) error
}

// Tokens hands out a user's Zoom access token (refreshed when expired).
type Tokens interface {
	ZoomAccess(ctx context.Context, user string) (string, error)
}

// Config configures a Dispatcher. Zero values take the defaults noted.
type Config struct {
	URL     string   // the launcher's endpoint
	Secrets [][]byte // the first signs
	HTTP    *http.Client
	// Zoom and Tokens fetch the join data; without them it is left out.
	Zoom   *zoom.Client
	Tokens Tokens
	// MaxAttempts bounds the deliveries of one item (8): with the default
	// delays, about ten minutes of trying.
	MaxAttempts int
	BaseDelay   time.Duration // first retry (1s), doubling
	MaxDelay    time.Duration // longest wait between attempts (5m)
	Workers     int           // items in flight at once (4)
	// Outcomes counts requests by outcome (dispatched, retried, failed,
	// cancelled); Latency observes request → launcher's 2xx in seconds.
	Outcomes *prometheus.CounterVec
	Latency  prometheus.Observer
	Logger   *slog.Logger
	Now      func() time.Time
}

// Dispatcher works through the outbox.
type Dispatcher struct {
	cfg   Config
	store Store
	wake  chan struct{}

	mu       sync.Mutex
	inflight map[int64]bool
}

// New returns a dispatcher; Run starts it.
func New(cfg Config, st Store) *Dispatcher {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = time.Second
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 5 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Outcomes == nil {
		cfg.Outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unused"}, []string{"outcome"})
	}
	if cfg.Latency == nil {
		cfg.Latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unused"})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Dispatcher{cfg: cfg, store: st, wake: make(chan struct{}, 1), inflight: map[int64]bool{}}
}

// Wake tells the dispatcher that something entered the outbox.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers due items until ctx ends, then waits for those in flight.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		d.mu.Lock()
		free := d.cfg.Workers - len(d.inflight)
		skip := make(map[int64]bool, len(d.inflight))
		for n := range d.inflight {
			skip[n] = true
		}
		d.mu.Unlock()
		var next time.Time
		if free > 0 {
			items, nextAt, err := d.store.DueOutbox(ctx, free, skip)
			if err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("read the bot outbox", "err", err)
				nextAt = d.cfg.Now().Add(time.Second)
			}
			next = nextAt
			for _, it := range items {
				d.mu.Lock()
				d.inflight[it.N] = true
				d.mu.Unlock()
				wg.Go(func() {
					d.handle(ctx, it)
					d.mu.Lock()
					delete(d.inflight, it.N)
					d.mu.Unlock()
					d.Wake()
				})
			}
		}
		var timer *time.Timer
		var due <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(max(next.Sub(d.cfg.Now()), 0))
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// handle makes one attempt at an item.
func (d *Dispatcher) handle(ctx context.Context, it store.OutboxItem) {
	log := d.cfg.Logger.With("request_id", it.RequestID, "type", it.Type)
	if it.Type == store.OutboxRequested && it.State != store.BotRequested && it.State != store.BotCancelled {
		// The launcher reported on it: it has the request, though its 2xx
		// was lost. Sending it again is pointless; its notices must follow.
		if err := d.store.OutboxDelivered(ctx, it); err != nil {
			log.Warn("record a delivery to the bot launcher", "err", err)
		}
		return
	}
	if it.Type == store.OutboxRequested && (it.State == store.BotCancelled || !it.Live) {
		// Cancelled meanwhile, or the meeting is over for its owner: never sent late.
		if err := d.store.OutboxCancelUnsent(ctx, it, "the meeting ended before the bot was sent"); err != nil {
			log.Warn("cancel an unsent bot request", "err", err)
		}
		return
	}
	if it.Body == "" {
		body, detail, err := d.build(ctx, it)
		if err != nil {
			d.retry(ctx, it, err, log)
			return
		}
		if err := d.store.SaveOutboxBody(ctx, it.N, body, detail); err != nil {
			log.Warn("save a built bot request", "err", err)
			return
		}
		it.Body, it.Detail = body, detail
	}
	if err := d.post(ctx, it); err != nil {
		d.retry(ctx, it, err, log)
		return
	}
	if err := d.store.OutboxDelivered(ctx, it); err != nil {
		log.Warn("record a delivery to the bot launcher", "err", err)
		return
	}
	if it.Type == store.OutboxRequested {
		d.cfg.Outcomes.WithLabelValues("dispatched").Inc()
		d.cfg.Latency.Observe(d.cfg.Now().Sub(it.RequestedAt).Seconds())
	}
	log.Info("delivered to the bot launcher", "attempt", it.Attempts+1)
}

// retryable is a failure worth another attempt, possibly not before after.
type retryable struct {
	err   error
	after time.Duration // the server's Retry-After, or zero
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// retry schedules the next attempt, or gives up after the last one.
func (d *Dispatcher) retry(ctx context.Context, it store.OutboxItem, err error, log *slog.Logger) {
	if ctx.Err() != nil {
		return // stopping: the item stays due and is tried after the restart
	}
	if it.Attempts+1 >= d.cfg.MaxAttempts {
		reason := "the bot launcher could not be reached: " + err.Error()
		log.Warn("giving up on a bot launcher delivery", "attempts", it.Attempts+1, "err", err)
		if gerr := d.store.OutboxGiveUp(ctx, it, reason); gerr != nil {
			log.Warn("give up a bot request", "err", gerr)
			return
		}
		if it.Type == store.OutboxRequested {
			d.cfg.Outcomes.WithLabelValues("failed").Inc()
		}
		return
	}
	// Jitter over an exponential step; the server's Retry-After is a floor
	// (bounded: a launcher cannot park a request for days).
	step := min(d.cfg.BaseDelay<<min(it.Attempts, 20), d.cfg.MaxDelay)
	wait := step/2 + time.Duration(rand.Int64N(int64(step/2)+1))
	var r *retryable
	if errors.As(err, &r) && r.after > wait {
		wait = min(r.after, time.Hour)
	}
	log.Info("bot launcher delivery failed; retrying", "attempt", it.Attempts+1, "in", wait.String(), "err", err)
	if serr := d.store.OutboxRetry(ctx, it.N, d.cfg.Now().Add(wait), err.Error()); serr != nil {
		log.Warn("schedule a retry", "err", serr)
		return
	}
	if it.Type == store.OutboxRequested {
		d.cfg.Outcomes.WithLabelValues("retried").Inc()
	}
}
