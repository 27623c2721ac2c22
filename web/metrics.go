package web

import (
	"github.com/prometheus/client_golang/prometheus"
	"net/http"
	"strconv"

	"onair/zoom"
)

// Label values, all present from start-up so alerts and dashboards never
// see a missing series.
var (
	webhookOutcomes  = []string{"accepted", "duplicate", "ignored", "rejected", "failed"}
	disconnectReason = []string{"client", "slow_consumer", "auth", "hello_timeout", "protocol",
		"ping_timeout", "too_many_tabs", "deauthorized", "logout", "shutdown", "resync"}
	frameTypes  = []string{"welcome", "meeting.started", "meeting.ended", "meeting.joined", "meeting.left", "bot.updated"}
	botOutcomes = []string{"dispatched", "retried", "failed", "cancelled"}
)

// Metrics are onair's Prometheus collectors, registered on an injected registry.
type Metrics struct {
	webhooks        *prometheus.CounterVec
	webhookDuration prometheus.Histogram
	webhookLast     prometheus.Gauge
	pushLatency     prometheus.Histogram
	wsConnections   prometheus.Gauge
	wsSent          *prometheus.CounterVec
	wsDisconnects   *prometheus.CounterVec
	BotRequests     *prometheus.CounterVec
	BotLatency      prometheus.Histogram
	ZoomCalls       *prometheus.CounterVec
	ReconcileRuns   prometheus.Counter
	Repairs         *prometheus.CounterVec
	// NotifyLag and Resyncs are about the other nodes (PostgreSQL): how
	// long a commit took to be heard here, and how often this node lost
	// its ear for them and had its tabs resume from the log.
	NotifyLag prometheus.Histogram
	Resyncs   prometheus.Counter
}

// NewMetrics registers onair's collectors on reg. liveMeetings is read at
// each scrape.
func NewMetrics(reg prometheus.Registerer, liveMeetings func() float64) *Metrics {
	m := &Metrics{
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onair_webhooks_total",
			Help: "Zoom webhook deliveries by event and outcome.",
		}, []string{"event", "outcome"}),
		webhookDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "onair_webhook_duration_seconds",
			Help:    "Time from receiving a webhook to answering it.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3},
		}),
		webhookLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onair_webhook_last_received_timestamp_seconds",
			Help: "Unix time of the last verified webhook delivery.",
		}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "onair_push_latency_seconds",
			Help:    "Time from receiving a webhook to writing its frame to a tab.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		wsConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onair_ws_connections",
			Help: "Open WebSocket connections that completed the hello.",
		}),
		wsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onair_ws_messages_sent_total",
			Help: "Frames written to WebSocket clients, by type.",
		}, []string{"type"}),
		wsDisconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onair_ws_disconnects_total",
			Help: "WebSocket connections closed, by reason.",
		}, []string{"reason"}),
		BotRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onair_bot_requests_total",
			Help: "Bot requests to the launcher, by outcome.",
		}, []string{"outcome"}),
	}
	m.BotLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "onair_bot_dispatch_latency_seconds",
		Help:    "Time from a bot request to the launcher's 2xx for it.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
	})
	m.ZoomCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onair_zoom_api_calls_total",
		Help: "Calls to Zoom's OAuth and REST API, by status class (2xx, 4xx, 429, 5xx, error).",
	}, []string{"status"})
	m.ReconcileRuns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onair_reconcile_runs_total",
		Help: "Reconciliations of a user's live meetings against Zoom's API.",
	})
	m.Repairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onair_live_repairs_total",
		Help: "Live meetings repaired without a webhook, by what was done (started, ended, stale).",
	}, []string{"repair"})
	m.NotifyLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "onair_cluster_notify_lag_seconds",
		Help:    "Time from a commit (on any node) to this node hearing it; PostgreSQL only.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	m.Resyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onair_cluster_resyncs_total",
		Help: "Times this node lost its connection for hearing other nodes' commits and closed its tabs (1012) to resume from the log.",
	})
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "onair_live_meetings",
		Help: "Meetings onair currently holds live.",
	}, liveMeetings)
	reg.MustRegister(m.webhooks, m.webhookDuration, m.webhookLast, m.pushLatency, m.wsConnections,
		m.wsSent, m.wsDisconnects, m.BotRequests, m.BotLatency, m.ZoomCalls, m.ReconcileRuns, m.Repairs,
		m.NotifyLag, m.Resyncs, live)
	for _, e := range append(append([]string{}, zoom.KnownEvents...), "other", "unverified") {
		for _, o := range webhookOutcomes {
			m.webhooks.WithLabelValues(e, o)
		}
	}
	for _, t := range frameTypes {
		m.wsSent.WithLabelValues(t)
	}
	for _, r := range disconnectReason {
		m.wsDisconnects.WithLabelValues(r)
	}
	for _, o := range botOutcomes {
		m.BotRequests.WithLabelValues(o)
	}
	for _, c := range []string{"2xx", "4xx", "429", "5xx", "error"} {
		m.ZoomCalls.WithLabelValues(c)
	}
	for _, r := range []string{"started", "ended", "stale"} {
		m.Repairs.WithLabelValues(r)
	}
	return m
}

// ZoomTransport counts the calls made through next (nil: the default
// transport) in onair_zoom_api_calls_total.
func (m *Metrics) ZoomTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		class := "error"
		switch {
		case err != nil:
		case resp.StatusCode == http.StatusTooManyRequests:
			class = "429"
		default:
			class = strconv.Itoa(resp.StatusCode/100) + "xx"
		}
		m.ZoomCalls.WithLabelValues(class).Inc()
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// eventLabel maps a Zoom event name to its metrics label.
func eventLabel(name string) string {
	for _, e := range zoom.KnownEvents {
		if e == name {
			return name
		}
	}
	return "other"
}
