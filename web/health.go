package web

import (
	"context"
	"net/http"
	"time"
)

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz is 200 only when start-up is done, the server is not
// draining, the database takes a write and (PostgreSQL) this node hears
// the other nodes' commits: without that its tabs would miss events.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case !s.ready.Load():
		writeError(w, http.StatusServiceUnavailable, "starting", "start-up is not done")
		return
	case s.draining.Load():
		writeError(w, http.StatusServiceUnavailable, "draining", "shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: database not writable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database", "database not writable")
		return
	}
	if err := s.store.Listening(); err != nil {
		s.log.Warn("readiness: not hearing the other nodes", "err", err)
		writeError(w, http.StatusServiceUnavailable, "cluster", "not hearing the other nodes' commits")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
