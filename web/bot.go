package web

import (
	"errors"
	"net/http"

	"onair/store"
)

// handleRequestBot records "send the bot" for a meeting live for the
// caller: 202 with a new request, 200 with the active one on a repeat.
func (s *Server) handleRequestBot(w http.ResponseWriter, r *http.Request) {
	uuid := r.PathValue("uuid")
	b, created, err := s.store.RequestBot(r.Context(), requestUser(r), uuid)
	switch {
	case errors.Is(err, store.ErrNotLive):
		writeError(w, http.StatusNotFound, "not_live", "this meeting is not live for you")
		return
	case err != nil:
		s.internalError(w, "request bot", err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	writeJSON(w, status, map[string]any{"bot": b})
}

// handleCancelBot cancels the caller's active request for a meeting.
func (s *Server) handleCancelBot(w http.ResponseWriter, r *http.Request) {
	b, _, err := s.store.CancelBot(r.Context(), requestUser(r), r.PathValue("uuid"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no_bot_request", "you have no active bot request for this meeting")
		return
	case err != nil:
		s.internalError(w, "cancel bot", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bot": b})
}
