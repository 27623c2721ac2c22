package web

import "net/http"

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/zoom", s.handleWebhook)
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.Handle("GET /api/v1/me", s.authed(s.handleMe))
	mux.Handle("GET /api/v1/meetings/live", s.authed(s.handleLiveMeetings))
	mux.Handle("PUT /api/v1/me/settings", s.authed(s.handleSettings))
	mux.Handle("POST /api/v1/meetings/{uuid}/bot", s.authed(s.handleRequestBot))
	mux.Handle("DELETE /api/v1/meetings/{uuid}/bot", s.authed(s.handleCancelBot))
	mux.HandleFunc("POST /api/v1/bots/{request_id}/status", s.handleBotStatus)
	mux.HandleFunc("POST /auth/logout", s.handleLogout)
	if s.cfg.Zoom != nil {
		mux.HandleFunc("GET /auth/zoom/login", s.handleZoomLogin)
		mux.HandleFunc("GET /auth/zoom/callback", s.handleZoomCallback)
	}
	if s.cfg.Dev {
		mux.HandleFunc("POST /auth/demo", s.handleDemoSignIn)
		mux.Handle("POST /api/v1/dev/simulate", s.authed(s.handleSimulate))
	}
	mux.HandleFunc("GET /{$}", s.handlePage)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	files := assets()
	for _, f := range []string{"/app.js", "/style.css", "/onair.js", "/onair.d.ts"} {
		mux.Handle("GET "+f, files)
	}
	mux.HandleFunc("OPTIONS /api/", s.handlePreflight)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.cfg.MetricsHandler != nil {
		mux.Handle("GET /metrics", s.cfg.MetricsHandler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	s.mux = mux
}
