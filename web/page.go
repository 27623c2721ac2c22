package web

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"

	"onair/store"
)

// static holds the page, its script and style, and onair.js for host apps.
//
//go:embed static
var static embed.FS

var pageTemplate = template.Must(template.ParseFS(static, "static/index.html"))

// pageData is what index.html is rendered with.
type pageData struct {
	User       *store.User // nil when signed out
	Error      string      // why a sign-in failed
	ZoomSignIn bool
	Dev        bool
}

// handlePage serves the page: the signed-in view when the session cookie is
// good, else the sign-in view. It needs no request of its own to paint.
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	s.renderPage(w, r, http.StatusOK, "")
}

func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	data := pageData{Error: errMsg, ZoomSignIn: s.cfg.Zoom != nil, Dev: s.cfg.Dev}
	if errMsg == "" {
		if sess, ok := s.sessionFrom(w, r); ok {
			u, err := s.store.User(r.Context(), sess.user)
			switch {
			case err == nil:
				data.User = &u
			case !errors.Is(err, store.ErrNotFound):
				s.log.Error("read user", "err", err)
			}
		}
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		s.internalError(w, "render page", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// assets serves the page's files and onair.js. Browsers revalidate them
// (no-cache) so a new onair release is picked up on the next load.
func assets() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		switch r.URL.Path {
		case "/onair.js", "/onair.d.ts":
			// Host apps on other origins import them.
			w.Header().Set("Access-Control-Allow-Origin", "*")
		}
		if r.URL.Path == "/onair.d.ts" {
			// The system's MIME table may call .ts an MPEG stream.
			w.Header().Set("Content-Type", "application/typescript; charset=utf-8")
		}
		files.ServeHTTP(w, r)
	})
}
