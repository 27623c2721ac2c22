package web

import (
	"github.com/prometheus/client_golang/prometheus"

	"onair/zoom"
)

// Label values, all present from start-up so alerts and dashboards never
// see a missing series.
var (
	webhookOutcomes  = []string{"accepted", "duplicate", "ignored", "rejected", "failed"}
	disconnectReason = []string{"client", "slow_consumer", "auth", "hello_timeout", "protocol",
		"ping_timeout", "too_many_tabs", "deauthorized", "logout", "shutdown"}
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
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "onair_live_meetings",
		Help: "Meetings onair currently holds live.",
	}, liveMeetings)
	reg.MustRegister(m.webhooks, m.webhookDuration, m.webhookLast, m.pushLatency, m.wsConnections,
		m.wsSent, m.wsDisconnects, m.BotRequests, live)
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
	return m
}

// eventLabel maps a Zoom event name to its metrics label.
func eventLabel(name string) string {
	for _, e := range zoom.KnownEvents {
		if e == name {
			return name
		}
	}
	return "other"
}
