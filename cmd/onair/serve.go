package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"onair/dispatch"
	"onair/hub"
	"onair/internal/gcpace"
	"onair/reconcile"
	"onair/store"
	"onair/web"
	"onair/zoom"
)

func runServe(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	so := declareServe(o)
	if err := o.parse(args); err != nil {
		return err
	}
	cfg, err := so.validate(o)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	// Bind first: a busy port fails the start at once, before any other work.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, unwrapListen(err))
	}
	defer ln.Close()
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.MetricsAddr, unwrapListen(err))
		}
		defer metricsLn.Close()
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if cfg.PublicURL == "" {
		cfg.PublicURL = fmt.Sprintf("http://localhost:%d", port)
	}
	if len(cfg.AllowedOrigins) == 0 {
		origin, _ := parseOrigin(cfg.PublicURL)
		cfg.AllowedOrigins = []string{origin}
		if cfg.Dev {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, fmt.Sprintf("http://127.0.0.1:%d", port))
		}
	}

	// Start-up runs to its end even when a signal comes meanwhile: the stop
	// then begins as soon as the server runs (a canceled Open is no failure).
	startCtx := context.WithoutCancel(ctx)
	h := hub.New(hub.Options{MaxTabs: cfg.MaxTabs})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var st *store.Store // read by the live-meetings gauge only once serving
	metrics := web.NewMetrics(reg, func() float64 {
		n, err := st.CountLive(context.Background())
		if err != nil {
			return 0
		}
		return float64(n)
	})
	publish := web.Publish(h, metrics)
	// The dispatcher is made once the server exists; the store's listener
	// (PostgreSQL) may hear another node's commit before that.
	var disp atomic.Pointer[dispatch.Dispatcher]
	onCommit := func(c store.Committed) {
		publish(c)
		if d := disp.Load(); c.Outbox && d != nil {
			d.Wake()
		}
	}
	st, err = store.Open(startCtx, store.Options{Path: cfg.DB, Sync: store.Sync(cfg.DBSync), OnCommit: onCommit,
		SecretKey: cfg.SecretKey, Launcher: cfg.BotWebhookURL != "", DatabaseURL: cfg.DatabaseURL,
		OnMissed: func(lost bool) {
			// Commits may have gone unheard: every tab resumes from the log
			// (again once the node hears again: tabs opened meanwhile too).
			if lost {
				metrics.Resyncs.Inc()
			}
			h.DropAll(hub.ReasonResync)
			if d := disp.Load(); d != nil {
				d.Wake()
			}
		},
		OnNotified: func(lag time.Duration) { metrics.NotifyLag.Observe(lag.Seconds()) },
	})
	if err != nil {
		if cfg.DatabaseURL != "" {
			return fmt.Errorf("open the PostgreSQL database: %w", err)
		}
		return fmt.Errorf("open database %s: %w", cfg.DB, err)
	}
	defer st.Close()

	if cfg.Dev {
		if err := devSecrets(startCtx, st, cfg, stdout); err != nil {
			return err
		}
	}

	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	publicURL, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return fmt.Errorf("public url: %w", err) // validated with the configuration
	}
	wcfg := web.Config{
		WebhookSecrets: cfg.WebhookSecrets,
		TokenSecrets:   cfg.TokenSecrets,
		AllowedOrigins: cfg.AllowedOrigins,
		MaxSkew:        cfg.WebhookMaxSkew,
		PingInterval:   cfg.PingInterval,
		Logger:         log,
		PublicURL:      publicURL,
		Dev:            cfg.Dev,
	}
	if cfg.ZoomClientID != "" {
		wcfg.Zoom = &zoom.Client{
			ClientID: cfg.ZoomClientID, ClientSecret: cfg.ZoomClientSecret,
			OAuthURL: cfg.ZoomOAuthURL, APIURL: cfg.ZoomAPIURL,
			HTTP: &http.Client{Timeout: 10 * time.Second, Transport: metrics.ZoomTransport(nil)},
		}
	}
	if metricsLn == nil {
		wcfg.MetricsHandler = metricsHandler
	}
	wcfg.BotSecrets = cfg.BotWebhookSecrets
	var rec *reconcile.Reconciler // set before the server takes a socket
	wcfg.OnFirstTab = func(user string) { rec.Kick(user) }
	srv := web.New(wcfg, st, h, metrics)
	rec = reconcile.New(reconcile.Config{
		Zoom: wcfg.Zoom, Tokens: srv, Interval: cfg.ReconcileInterval, StaleAfter: cfg.StaleAfter,
		Runs: metrics.ReconcileRuns, Repairs: metrics.Repairs, Logger: log,
	}, st)

	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go srv.Run(runCtx)
	reconciled := make(chan struct{})
	go func() { defer close(reconciled); rec.Run(runCtx) }()
	dispatched := make(chan struct{})
	if cfg.BotWebhookURL != "" {
		d := dispatch.New(dispatch.Config{
			URL: cfg.BotWebhookURL, Secrets: cfg.BotWebhookSecrets, Zoom: wcfg.Zoom, Tokens: srv,
			Outcomes: metrics.BotRequests, Latency: metrics.BotLatency, Logger: log,
		}, st)
		disp.Store(d)
		go func() { defer close(dispatched); d.Run(runCtx) }()
	} else {
		close(dispatched)
	}
	go sweepLoop(runCtx, st, store.Retention{Age: cfg.Retention, Events: cfg.RetentionEvents}, log)
	// GOGC, when set, is the operator's own choice of pacing.
	switch {
	case os.Getenv("GOGC") != "": // as the runtime reads it: empty is unset
		log.Info("collector pacing in bursts is off: GOGC is set")
	case cfg.GCBurstMiB == 0:
		log.Info("collector pacing in bursts is off", "gc_burst_mib", 0)
	default:
		log.Info("collector pacing in bursts", "gc_burst_mib", cfg.GCBurstMiB)
		go gcpace.Run(runCtx, gcpace.Options{Webhooks: srv.Webhooks, MaxExtra: uint64(cfg.GCBurstMiB) << 20})
	}

	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsSrv = &http.Server{Handler: metricsMux(metricsHandler), ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErr <- metricsSrv.Serve(metricsLn) }()
	}
	srv.SetReady()
	metricsAddr := "" // empty: /metrics is on the public listener
	if metricsLn != nil {
		metricsAddr = metricsLn.Addr().String() // the bound address, so :0 can be found
	}
	log.Info("onair listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL,
		"metrics_addr", metricsAddr, "db", databaseName(cfg), "dev", cfg.Dev)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}

	// Drain: /readyz says 503 so load balancers move away; all else is served.
	log.Info("shutting down: draining", "drain", cfg.ShutdownDrain.String())
	srv.Drain()
	select {
	case <-time.After(cfg.ShutdownDrain):
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("shutting down: closing listener and sockets")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(shutCtx) }()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if metricsSrv != nil {
		metricsSrv.Shutdown(shutCtx)
	}
	if err := <-closed; err != nil {
		log.Warn("sockets did not all close in time", "err", err)
	}
	stopRun()
	<-dispatched // deliveries in flight end; what they did not finish stays due
	<-reconciled
	log.Info("stopped")
	return nil
}

// devSecrets generates (once) and keeps the dev-mode secrets in the
// database, and prints the webhook secret: the one secret ever printed.
func devSecrets(ctx context.Context, st *store.Store, cfg *config, stdout io.Writer) error {
	if len(cfg.WebhookSecrets) == 0 {
		s, err := st.Secret(ctx, "webhook")
		if err != nil {
			return err
		}
		cfg.WebhookSecrets = [][]byte{[]byte(s)}
		fmt.Fprintf(stdout, "onair dev mode: webhook secret %s\n", s)
	}
	if len(cfg.TokenSecrets) == 0 {
		s, err := st.Secret(ctx, "token")
		if err != nil {
			return err
		}
		cfg.TokenSecrets = [][]byte{[]byte(s)}
	}
	if cfg.SecretKey == nil {
		s, err := st.Secret(ctx, "secret_key")
		if err != nil {
			return err
		}
		key, err := hex.DecodeString(s)
		if err != nil {
			return fmt.Errorf("dev-mode secret key: %w", err)
		}
		cfg.SecretKey = key
		if err := st.UseSecretKey(key); err != nil {
			return err
		}
	}
	return nil
}

// databaseName says where the state is, for the logs: the SQLite file, or
// the PostgreSQL URL without its password and parameters.
func databaseName(cfg *config) string {
	if cfg.DatabaseURL == "" {
		return cfg.DB
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return "postgres"
	}
	name := u.Scheme + "://"
	if u.User != nil {
		name += u.User.Username() + "@"
	}
	return name + u.Host + u.Path
}

// sweepLoop applies retention at start and then hourly; one node at a
// time when several share the database.
func sweepLoop(ctx context.Context, st *store.Store, r store.Retention, log *slog.Logger) {
	for {
		var n int64
		_, err := st.Once(ctx, "retention", func(ctx context.Context) (err error) {
			n, err = st.Sweep(ctx, r)
			return err
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("retention sweep", "err", err)
		} else if n > 0 {
			log.Info("retention sweep", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// metricsMux serves /metrics and the pprof profiles: only ever on the
// metrics listener, never on the public one.
func metricsMux(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// unwrapListen keeps the useful part of a listen error ("address already in use").
func unwrapListen(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		msg := opErr.Err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return errors.New(msg)
	}
	return err
}
