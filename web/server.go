// Package web is onair's HTTP face: the Zoom webhook endpoint, the API, the
// WebSocket endpoint, health checks and metrics.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"onair/hub"
	"onair/store"
	"onair/zoom"
)

// Store is what the web layer needs of the state.
type Store interface {
	Ingest(ctx context.Context, d store.Delivery) (store.Outcome, error)
	Admit(ctx context.Context, user string, issuedAt time.Time) error
	User(ctx context.Context, id string) (store.User, error)
	Welcome(ctx context.Context, user string, since *store.Position, maxReplay int) (store.Welcome, error)
	LiveMeetings(ctx context.Context, user string) ([]store.Meeting, error)
	Ping(ctx context.Context) error
	Listening() error
	Once(ctx context.Context, name string, fn func(context.Context) error) (bool, error)

	SessionKey(id string) string
	Session(ctx context.Context, id string) (store.Session, error)
	RenewSession(ctx context.Context, id string, expires time.Time) error
	EndSession(ctx context.Context, id string) error
	SignIn(ctx context.Context, in store.SignIn) error
	SetAutoSendBot(ctx context.Context, user string, on bool) (store.User, error)
	RequestBot(ctx context.Context, user, meetingUUID string) (store.Bot, bool, error)
	CancelBot(ctx context.Context, user, meetingUUID string) (store.Bot, string, error)
	ZoomToken(ctx context.Context, user string) (store.ZoomToken, error)
	SaveZoomToken(ctx context.Context, user string, t store.ZoomToken) error
	RevokeZoomGrant(ctx context.Context, user string) error
	BotStatus(ctx context.Context, requestID, state, detail string) (store.Bot, bool, error)
}

// Config is the web layer's configuration. Zero durations take the defaults noted.
type Config struct {
	WebhookSecrets [][]byte      // any verifies
	TokenSecrets   [][]byte      // connection tokens; the first signs, any verifies; none disables them
	AllowedOrigins []string      // exact origins (scheme://host[:port]) allowed for browsers
	MaxSkew        time.Duration // x-zm-request-timestamp window (5m)
	WebhookTimeout time.Duration // commit deadline of a webhook (2s)
	HelloTimeout   time.Duration // first frame deadline (10s)
	PingInterval   time.Duration // 25s; must stay under 30s
	PingTimeout    time.Duration // pong deadline (15s)
	WriteTimeout   time.Duration // one frame write (10s)
	MaxReplay      int           // most events a resume replays before a fresh snapshot instead (1000)
	// PublicURL is the external base URL: OAuth redirects, and cookies are
	// Secure when it is https.
	PublicURL *url.URL
	// Zoom signs users in with Zoom; nil disables it (/auth/zoom/* is 404).
	Zoom       *zoom.Client
	SessionTTL time.Duration // a browser session's sliding lifetime (14 days)
	// Dev enables the demo user and the simulate control.
	Dev bool
	// BotSecrets verify the bot launcher's status callbacks (any of them).
	BotSecrets [][]byte
	// OnFirstTab is told, after the welcome, when a user's first tab has
	// connected (live state is then checked against Zoom); it must not block.
	OnFirstTab func(user string)
	// MetricsHandler serves /metrics on the public server; nil when metrics
	// have a listener of their own.
	MetricsHandler http.Handler
	Logger         *slog.Logger
	Now            func() time.Time
}

// Server serves onair's HTTP endpoints.
type Server struct {
	cfg     Config
	store   Store
	hub     *hub.Hub
	metrics *Metrics
	log     *slog.Logger
	mux     *http.ServeMux
	tabs    *tabSet
	// signatures checks webhooks against cfg.WebhookSecrets, and
	// botSignatures the launcher's reports against cfg.BotSecrets.
	signatures, botSignatures *zoom.Signatures

	ready    atomic.Bool   // start-up done
	draining atomic.Bool   // /readyz answers 503
	closing  atomic.Bool   // past the drain: webhooks answer 503
	webhooks atomic.Uint64 // signed webhooks received
	conns    sync.WaitGroup

	zoomTokens zoomTokens
}

// New returns a server; it does no I/O. Call SetReady once start-up is done.
func New(cfg Config, st Store, h *hub.Hub, m *Metrics) *Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.MaxSkew, 5*time.Minute)
	def(&cfg.WebhookTimeout, 2*time.Second)
	def(&cfg.HelloTimeout, 10*time.Second)
	def(&cfg.PingInterval, 25*time.Second)
	def(&cfg.PingTimeout, 15*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.SessionTTL, 14*24*time.Hour)
	if cfg.MaxReplay <= 0 {
		cfg.MaxReplay = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PublicURL == nil {
		cfg.PublicURL = &url.URL{Scheme: "http", Host: "localhost"}
	}
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	}
	s := &Server{cfg: cfg, store: st, hub: h, metrics: m, log: cfg.Logger,
		signatures: zoom.NewSignatures(cfg.WebhookSecrets), botSignatures: zoom.NewSignatures(cfg.BotSecrets)}
	s.tabs = newTabSet(s, cfg.PingInterval)
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run pings open sockets until ctx ends.
func (s *Server) Run(ctx context.Context) { s.tabs.run(ctx) }

// SetReady marks start-up as done.
func (s *Server) SetReady() { s.ready.Store(true) }

// Drain makes /readyz answer 503 while everything else is still served.
func (s *Server) Drain() { s.draining.Store(true) }

// Close ends the drain: webhooks answer 503 (Zoom retries them), every
// socket is closed with 1012, and it waits for them until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	s.draining.Store(true)
	s.closing.Store(true)
	s.hub.Close(hub.ReasonShutdown)
	s.tabs.closeAll()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
