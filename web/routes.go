package web

import "net/http"

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/zoom", s.handleWebhook)
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.Handle("GET /api/v1/me", s.authed(s.handleMe))
	mux.Handle("GET /api/v1/meetings/live", s.authed(s.handleLiveMeetings))
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
