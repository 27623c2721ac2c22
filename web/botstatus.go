package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"onair/store"
	"onair/zoom"
)

// Headers of the launcher's callback: the same as onair's requests to it.
const (
	headerBotTimestamp = "X-Onair-Request-Timestamp"
	headerBotSignature = "X-Onair-Signature"
)

// handleBotStatus is the launcher reporting on a request, signed with
// ONAIR_BOT_WEBHOOK_SECRET like onair's requests to it: 204 when applied
// (or a repeat of the current state), 401 bad signature or timestamp, 404
// unknown request, 409 a move the state machine does not allow.
func (s *Server) handleBotStatus(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body over 64 KiB")
		return
	}
	ts := r.Header.Get(headerBotTimestamp)
	if err := zoom.CheckTimestamp(ts, s.cfg.Now(), 5*time.Minute); err != nil {
		writeError(w, http.StatusUnauthorized, "bad_timestamp", err.Error())
		return
	}
	if len(s.cfg.BotSecrets) == 0 {
		writeError(w, http.StatusUnauthorized, "bad_signature", "no bot launcher secret is configured")
		return
	}
	if _, err := s.botSignatures.Verify(ts, body, r.Header.Get(headerBotSignature)); err != nil {
		writeError(w, http.StatusUnauthorized, "bad_signature", err.Error())
		return
	}
	var in struct {
		State  string `json:"state"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be JSON like {"state": "joined", "detail": "..."}`)
		return
	}
	switch in.State {
	case store.BotJoining, store.BotJoined, store.BotLeft, store.BotFailed:
	default:
		writeError(w, http.StatusBadRequest, "bad_state", "state must be joining, joined, left or failed")
		return
	}
	_, _, err = s.store.BotStatus(r.Context(), r.PathValue("request_id"), in.State, in.Detail)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "unknown_request", "no such bot request")
	case errors.Is(err, store.ErrIllegalMove):
		writeError(w, http.StatusConflict, "illegal_move", "the request cannot move to "+in.State+" from its state")
	case err != nil:
		s.internalError(w, "bot status", err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
