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
	ClaimOutbox(ctx context.Context, limit int, lease time.Duration) ([]store.OutboxItem, time.Time, error)
	ReadyToSend(ctx context.Context, it store.OutboxItem, body, detail string, until time.Time) error
	OutboxRetry(ctx context.Context, it store.OutboxItem, at time.Time, lastErr string) error
	OutboxRelease(ctx context.Context, it store.OutboxItem) error
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
	inflight int
}

// claimLease is how long a claimed item is this dispatcher's before
// another worker (of any node) may take it over: long enough to fetch its
// join data from Zoom, retries included. Sending it then holds it for the
// HTTP timeout and sendMargin.
const (
	claimLease = 40 * time.Second
	sendMargin = 15 * time.Second
)

// NoRedirects is the launcher client's CheckRedirect: a 3xx is an answer
// (a failure, retried), never followed, or a 303 would turn the signed POST
// into a GET whose 2xx looks like a delivery, and a 307 would hand the
// signed request to another host.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// New returns a dispatcher; Run starts it.
func New(cfg Config, st Store) *Dispatcher {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second, CheckRedirect: NoRedirects}
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
	return &Dispatcher{cfg: cfg, store: st, wake: make(chan struct{}, 1)}
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
		free := d.cfg.Workers - d.inflight
		d.mu.Unlock()
		var next time.Time
		if free > 0 {
			items, nextAt, err := d.store.ClaimOutbox(ctx, free, claimLease)
			if err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("read the bot outbox", "err", err)
				nextAt = d.cfg.Now().Add(time.Second)
			}
			next = nextAt
			for _, it := range items {
				d.mu.Lock()
				d.inflight++
				d.mu.Unlock()
				wg.Go(func() {
					d.handle(ctx, it)
					d.mu.Lock()
					d.inflight--
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
	// The bookkeeping after a send must happen even when the server stops
	// meanwhile: a 2xx not recorded would send the request again.
	book, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if it.Type == store.OutboxRequested && it.State != store.BotRequested && it.State != store.BotCancelled {
		// The launcher reported on it: it has the request, though its 2xx
		// was lost. Sending it again is pointless; its notices must follow.
		err := d.store.OutboxDelivered(book, it)
		if err == nil {
			d.cfg.Outcomes.WithLabelValues("dispatched").Inc()
		}
		d.bookkeep(it, err, log)
		return
	}
	if it.Type == store.OutboxRequested && (it.State == store.BotCancelled || !it.Live) {
		// Cancelled meanwhile, or the meeting is over for its owner: never sent late.
		d.bookkeep(it, d.store.OutboxCancelUnsent(book, it, "the meeting ended before the bot was sent"), log)
		return
	}
	var body, detail string
	if it.Body == "" {
		var err error
		if body, detail, err = d.build(ctx, it); err != nil {
			d.retry(ctx, book, it, err, log)
			return
		}
	}
	// The last check, after the join data took its time: still due?
	if err := d.store.ReadyToSend(book, it, body, detail, d.cfg.Now().Add(d.cfg.HTTP.Timeout+sendMargin)); err != nil {
		if !errors.Is(err, store.ErrOutboxGone) {
			d.bookkeep(it, err, log)
		}
		return // gone: the next read handles what became of it
	}
	if body != "" {
		it.Body, it.Detail = body, detail
	}
	if err := d.post(ctx, it); err != nil {
		d.retry(ctx, book, it, err, log)
		return
	}
	if err := d.store.OutboxDelivered(book, it); err != nil {
		d.bookkeep(it, err, log)
		return
	}
	if it.Type == store.OutboxRequested {
		d.cfg.Outcomes.WithLabelValues("dispatched").Inc()
		d.cfg.Latency.Observe(d.cfg.Now().Sub(it.RequestedAt).Seconds())
	}
	log.Info("delivered to the bot launcher", "attempt", it.Attempts+1)
}

// bookkeep notes a failed write about an item; nil is nothing to note.
// The item stays claimed until its lease ends, then is tried again (by any
// node), so a failing database does not make it spin.
func (d *Dispatcher) bookkeep(it store.OutboxItem, err error, log *slog.Logger) {
	if err == nil {
		return
	}
	log.Warn("bot outbox bookkeeping failed; the item is tried again when its claim runs out", "err", err)
}

// retryable is a failure worth another attempt, possibly not before after.
type retryable struct {
	err   error
	after time.Duration // the server's Retry-After, or zero
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// retry schedules the next attempt, or gives up after the last one.
func (d *Dispatcher) retry(ctx, book context.Context, it store.OutboxItem, err error, log *slog.Logger) {
	if ctx.Err() != nil {
		// Stopping: the item is due again at once, for another node or
		// after the restart.
		if rerr := d.store.OutboxRelease(book, it); rerr != nil {
			d.bookkeep(it, rerr, log)
		}
		return
	}
	if it.Attempts+1 >= d.cfg.MaxAttempts {
		reason := "not delivered to the bot launcher: " + err.Error()
		log.Warn("giving up on a bot launcher delivery", "attempts", it.Attempts+1, "err", err)
		if gerr := d.store.OutboxGiveUp(book, it, reason); gerr != nil {
			d.bookkeep(it, gerr, log)
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
	if serr := d.store.OutboxRetry(book, it, d.cfg.Now().Add(wait), err.Error()); serr != nil {
		d.bookkeep(it, serr, log)
		return
	}
	if it.Type == store.OutboxRequested {
		d.cfg.Outcomes.WithLabelValues("retried").Inc()
	}
}
