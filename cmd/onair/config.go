package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// config is the validated configuration of `onair serve`.
type config struct {
	Addr              string
	MetricsAddr       string
	DB                string
	DatabaseURL       string // PostgreSQL instead of SQLite at DB
	PublicURL         string // empty: derived from the bound address
	AllowedOrigins    []string
	WebhookSecrets    [][]byte
	TokenSecrets      [][]byte
	SecretKey         []byte
	ZoomClientID      string
	ZoomClientSecret  string
	ZoomOAuthURL      string
	ZoomAPIURL        string
	BotWebhookURL     string
	BotWebhookSecrets [][]byte
	DBSync            string
	MaxTabs           int
	ShutdownDrain     time.Duration
	WebhookMaxSkew    time.Duration
	ReconcileInterval time.Duration
	StaleAfter        time.Duration
	Retention         time.Duration
	RetentionEvents   int
	GCBurstMiB        int
	PingInterval      time.Duration
	LogLevel          string
	Dev               bool
}

// serveOptions declares every setting of CONTRACT §1 (and onair's additions).
type serveOptions struct {
	addr, metricsAddr, db, databaseURL, publicURL, allowedOrigins         *optSpec
	webhookSecret, tokenSecret, secretKey, zoomClientID, zoomClientSecret *optSpec
	zoomOAuthURL, zoomAPIURL, botURL, botSecret, dbSync, maxTabs          *optSpec
	drain, skew, reconcile, retention, retentionEvents, pingInterval      *optSpec
	staleAfter, logLevel, dev, gcBurst                                    *optSpec
}

func declareServe(o *options) *serveOptions {
	return &serveOptions{
		addr:             o.add("addr", "ONAIR_ADDR", "", "listen address of the public HTTP server (default :8080; 127.0.0.1:8080 in dev mode)"),
		metricsAddr:      o.add("metrics-addr", "ONAIR_METRICS_ADDR", "", "separate listener for /metrics (and pprof); empty: /metrics on the public server"),
		db:               o.add("db", "ONAIR_DB", "./data/onair.db", "SQLite file; its folder is created"),
		databaseURL:      o.add("database-url", "ONAIR_DATABASE_URL", "", "postgres://… to use PostgreSQL instead of SQLite"),
		publicURL:        o.add("public-url", "ONAIR_PUBLIC_URL", "", "external base URL (default http://localhost:PORT)"),
		allowedOrigins:   o.add("allowed-origins", "ONAIR_ALLOWED_ORIGINS", "", "comma-separated origins allowed to open /ws and call the API from a browser (default: the public URL's origin)"),
		webhookSecret:    o.add("zoom-webhook-secret", "ZOOM_WEBHOOK_SECRET_TOKEN", "", "Zoom app Secret Token(s), comma-separated; unset: dev mode"),
		tokenSecret:      o.add("token-secret", "ONAIR_TOKEN_SECRET", "", "HMAC key(s) for connection tokens, comma-separated: the first signs, any verifies"),
		secretKey:        o.add("secret-key", "ONAIR_SECRET_KEY", "", "32 bytes in standard base64: encrypts Zoom OAuth tokens at rest"),
		zoomClientID:     o.add("zoom-client-id", "ZOOM_CLIENT_ID", "", "OAuth client id of the user-managed Zoom app"),
		zoomClientSecret: o.add("zoom-client-secret", "ZOOM_CLIENT_SECRET", "", "OAuth client secret of the user-managed Zoom app"),
		zoomOAuthURL:     o.add("zoom-oauth-url", "ZOOM_OAUTH_URL", "https://zoom.us", "base of /oauth/authorize and /oauth/token"),
		zoomAPIURL:       o.add("zoom-api-url", "ZOOM_API_URL", "https://api.zoom.us/v2", "base of the Zoom REST API"),
		botURL:           o.add("bot-webhook-url", "ONAIR_BOT_WEBHOOK_URL", "", "where bot requests are POSTed"),
		botSecret:        o.add("bot-webhook-secret", "ONAIR_BOT_WEBHOOK_SECRET", "", "signs bot requests and verifies status callbacks, comma-separated: the first signs"),
		dbSync:           o.add("db-sync", "ONAIR_DB_SYNC", "normal", "normal: acknowledged webhooks survive a crash of onair; full: also a power cut"),
		maxTabs:          o.add("max-tabs-per-user", "ONAIR_MAX_TABS_PER_USER", "32", "open sockets one user may hold"),
		drain:            o.add("shutdown-drain", "ONAIR_SHUTDOWN_DRAIN", "5s", "on SIGTERM, how long /readyz answers 503 while still serving"),
		skew:             o.add("webhook-max-skew", "ONAIR_WEBHOOK_MAX_SKEW", "5m", "accepted distance of x-zm-request-timestamp from now"),
		reconcile:        o.add("reconcile-interval", "ONAIR_RECONCILE_INTERVAL", "5m", "how often live state is checked against Zoom's REST API"),
		retention:        o.add("retention", "ONAIR_RETENTION", "168h", "how long the event log, ended meetings and deduplication keys are kept"),
		retentionEvents:  o.add("retention-events", "ONAIR_RETENTION_EVENTS", "1000", "newest events kept per user"),
		pingInterval:     o.add("ping-interval", "ONAIR_PING_INTERVAL", "25s", "WebSocket ping interval (at most 30s)"),
		staleAfter:       o.add("stale-after", "ONAIR_STALE_AFTER", "24h", "end a live meeting with no event for this long that no Zoom token can ask about"),
		logLevel:         o.add("log-level", "ONAIR_LOG_LEVEL", "info", "debug, info, warn or error"),
		gcBurst:          o.add("gc-burst-mib", "ONAIR_GC_BURST_MIB", "256", "extra heap (MiB) the Go collector may use while webhooks arrive at 100/s or more, to collect less often; 0: never. Off when GOGC is set"),
		dev:              o.addBool("dev", "ONAIR_DEV", "development conveniences; refused unless the listen address is loopback"),
	}
}

// validate turns the options into a config, or one usage error.
func (so *serveOptions) validate(o *options) (*config, error) {
	c := &config{
		MetricsAddr:       so.metricsAddr.str(),
		DB:                so.db.str(),
		PublicURL:         strings.TrimSuffix(so.publicURL.str(), "/"),
		WebhookSecrets:    so.webhookSecret.secrets(),
		TokenSecrets:      so.tokenSecret.secrets(),
		ZoomClientID:      so.zoomClientID.str(),
		ZoomClientSecret:  so.zoomClientSecret.str(),
		ZoomOAuthURL:      strings.TrimSuffix(so.zoomOAuthURL.str(), "/"),
		ZoomAPIURL:        strings.TrimSuffix(so.zoomAPIURL.str(), "/"),
		BotWebhookURL:     so.botURL.str(),
		BotWebhookSecrets: so.botSecret.secrets(),
		DBSync:            strings.ToLower(so.dbSync.str()),
		LogLevel:          strings.ToLower(so.logLevel.str()),
	}
	var err error
	if c.Dev, err = so.dev.boolean(); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		sp  *optSpec
		dst *time.Duration
	}{{so.drain, &c.ShutdownDrain}, {so.skew, &c.WebhookMaxSkew}, {so.reconcile, &c.ReconcileInterval},
		{so.retention, &c.Retention}, {so.pingInterval, &c.PingInterval}, {so.staleAfter, &c.StaleAfter}} {
		if *d.dst, err = d.sp.duration(); err != nil {
			return nil, err
		}
	}
	if c.MaxTabs, err = so.maxTabs.positiveInt(); err != nil {
		return nil, err
	}
	if c.RetentionEvents, err = so.retentionEvents.positiveInt(); err != nil {
		return nil, err
	}
	if c.GCBurstMiB, err = so.gcBurst.nonNegativeInt(); err != nil {
		return nil, err
	}
	if c.GCBurstMiB > 1<<20 {
		return nil, usageErrorf("%s must be at most 1048576 (1 TiB)", so.gcBurst.name())
	}
	switch {
	case c.WebhookMaxSkew <= 0:
		return nil, usageErrorf("%s must be more than 0", so.skew.name())
	case c.ReconcileInterval <= 0:
		return nil, usageErrorf("%s must be more than 0", so.reconcile.name())
	case c.StaleAfter < time.Hour:
		return nil, usageErrorf("%s must be at least 1h", so.staleAfter.name())
	case c.PingInterval < time.Second || c.PingInterval > 30*time.Second:
		return nil, usageErrorf("%s must be between 1s and 30s", so.pingInterval.name())
	case c.Retention < 24*time.Hour:
		return nil, usageErrorf("%s must be at least 24h: Zoom retries a delivery for hours", so.retention.name())
	case c.DBSync != "normal" && c.DBSync != "full":
		return nil, usageErrorf("%s: %q is neither normal nor full", so.dbSync.name(), so.dbSync.value)
	case c.LogLevel != "debug" && c.LogLevel != "info" && c.LogLevel != "warn" && c.LogLevel != "error":
		return nil, usageErrorf("%s: %q is not debug, info, warn or error", so.logLevel.name(), so.logLevel.value)
	case c.DB == "":
		return nil, usageErrorf("%s must not be empty", so.db.name())
	}
	if so.databaseURL.str() != "" {
		if o.explicit["db"] {
			return nil, usageErrorf("%s and %s are both set: choose SQLite or PostgreSQL", so.db.name(), so.databaseURL.name())
		}
		u, err := url.Parse(so.databaseURL.str())
		// The host may be in the query instead (a Unix socket: ?host=/run/postgresql).
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || (u.Host == "" && u.Query().Get("host") == "") {
			return nil, usageErrorf("%s must be a postgres://host/database URL", so.databaseURL.name())
		}
		c.DatabaseURL = so.databaseURL.str()
	}
	if len(c.WebhookSecrets) == 0 {
		c.Dev = true // a production start without a webhook secret is impossible
	}
	c.Addr = so.addr.str()
	if c.Addr == "" {
		c.Addr = ":8080"
		if c.Dev {
			c.Addr = "127.0.0.1:8080"
		}
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, usageErrorf("%s: %q is not host:port", so.addr.name(), c.Addr)
	}
	if c.Dev && !loopback(host) {
		return nil, usageErrorf("dev mode (no ZOOM_WEBHOOK_SECRET_TOKEN, or --dev) refuses the non-loopback address %q; set ZOOM_WEBHOOK_SECRET_TOKEN for production", c.Addr)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return nil, usageErrorf("%s: %q is not host:port", so.metricsAddr.name(), c.MetricsAddr)
		}
	}
	if c.PublicURL != "" {
		if _, err := parseOrigin(c.PublicURL); err != nil {
			return nil, usageErrorf("%s: %v", so.publicURL.name(), err)
		}
	}
	for _, origin := range so.allowedOrigins.list() {
		norm, err := parseOrigin(origin)
		if err != nil {
			return nil, usageErrorf("%s: %v", so.allowedOrigins.name(), err)
		}
		c.AllowedOrigins = append(c.AllowedOrigins, norm)
	}
	if k := so.secretKey.str(); k != "" {
		key, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			key, err = base64.RawStdEncoding.DecodeString(k)
		}
		if err != nil || len(key) != 32 {
			return nil, usageErrorf("%s must be 32 bytes in standard base64 (e.g. openssl rand -base64 32)", so.secretKey.name())
		}
		c.SecretKey = key
	}
	if (c.ZoomClientID == "") != (c.ZoomClientSecret == "") {
		return nil, usageErrorf("%s and %s go together: set both or neither", so.zoomClientID.name(), so.zoomClientSecret.name())
	}
	if c.ZoomClientID != "" && c.SecretKey == nil && !c.Dev {
		return nil, usageErrorf("Zoom sign-in needs %s to encrypt Zoom tokens at rest", so.secretKey.name())
	}
	for _, u := range []*optSpec{so.zoomOAuthURL, so.zoomAPIURL} {
		if _, err := parseOrigin(u.str()); err != nil {
			return nil, usageErrorf("%s: %v", u.name(), err)
		}
	}
	if c.BotWebhookURL != "" {
		if _, err := parseOrigin(c.BotWebhookURL); err != nil {
			return nil, usageErrorf("%s: %v", so.botURL.name(), err)
		}
		if len(c.BotWebhookSecrets) == 0 {
			return nil, usageErrorf("%s needs %s to sign bot requests", so.botURL.name(), so.botSecret.name())
		}
	}
	return c, nil
}

// parseOrigin checks an http(s) URL and returns its origin as browsers send
// it: lower-cased, without the scheme's default port.
func parseOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", raw)
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return strings.ToLower(u.Scheme) + "://" + host, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
