package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
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

// The stylesheet is inlined into the page, so that no request stands
// between the HTML and its first paint; the CSP admits it by its hash.
var (
	pageStyle = template.CSS(mustRead("static/style.css"))
	styleHash = func() string {
		sum := sha256.Sum256([]byte(pageStyle))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}()
	pageCSP = "default-src 'self'; img-src 'self' data:; style-src " + styleHash +
		"; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

func mustRead(name string) string {
	b, err := static.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// pageData is what index.html is rendered with.
type pageData struct {
	User       *store.User // nil when signed out
	Error      string      // why a sign-in failed
	ZoomSignIn bool
	Dev        bool
	Style      template.CSS // the stylesheet, inlined
}

// handlePage serves the page: the signed-in view when the session cookie is
// good, else the sign-in view. It needs no request of its own to paint.
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	s.renderPage(w, r, http.StatusOK, "")
}

func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	data := pageData{Error: errMsg, ZoomSignIn: s.cfg.Zoom != nil, Dev: s.cfg.Dev, Style: pageStyle}
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
	h.Set("Content-Security-Policy", pageCSP)
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
