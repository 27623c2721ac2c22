package fakezoom

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

func (z *Zoom) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", z.authorize)
	mux.HandleFunc("POST /oauth/token", z.token)
	mux.HandleFunc("/v2/", z.serveAPI)
	return mux
}

// reply is an answer computed under z.mu and written after it is released.
type reply struct {
	status     int
	body       any
	retryAfter bool
}

func (rp reply) write(w http.ResponseWriter) {
	if rp.retryAfter {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(rp.status)
	json.NewEncoder(w).Encode(rp.body)
}

// oauthError is the body of Zoom's OAuth errors, e.g.
// {"reason":"Invalid client_id or client_secret","error":"invalid_client"}.
type oauthError struct {
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func oauthFail(status int, errCode, reason string) reply {
	return reply{status: status, body: oauthError{Reason: reason, Error: errCode}}
}

// authorize is GET /oauth/authorize. Zoom shows an error page for a bad
// request; the fake answers 400 with a line of text in the page's style.
func (z *Zoom) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page := func(msg string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "%s (4,700)\n", msg)
	}
	if id := q.Get("client_id"); id != z.ClientID {
		page("Invalid client_id: " + id)
		return
	}
	if rt := q.Get("response_type"); rt != "code" {
		page("Invalid response_type: " + rt)
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if redirect == "" || err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") ||
		(z.redirectURIs != nil && !z.redirectURIs[redirect]) {
		page("Invalid redirect: " + redirect)
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" {
		if method == "" {
			method = "plain" // RFC 7636 and Zoom's documentation
		}
		if method != "S256" && method != "plain" {
			page("Invalid code_challenge_method: " + method)
			return
		}
	}

	params := u.Query()
	if state := q.Get("state"); state != "" {
		params.Set("state", state)
	}
	z.mu.Lock()
	switch {
	case z.deny:
		params.Set("error", "access_denied")
		params.Set("error_description", "The user denied the authorization request.")
	case z.current == "":
		z.mu.Unlock()
		page("fakezoom: no user signed in (AddUser or SignInAs)")
		return
	default:
		code := rand.Text()
		z.codes[code] = &authCode{
			userID:      z.current,
			redirectURI: redirect,
			challenge:   challenge,
			method:      method,
			expires:     z.now().Add(CodeTTL),
		}
		params.Set("code", code)
	}
	z.mu.Unlock()
	u.RawQuery = params.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token is POST /oauth/token.
func (z *Zoom) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm() // a malformed body leaves PostForm empty: "Missing grant type"
	z.mu.Lock()
	rp := z.tokenReply(r)
	z.mu.Unlock()
	rp.write(w)
}

func (z *Zoom) tokenReply(r *http.Request) reply {
	form := r.PostForm // Zoom no longer reads the query string here
	grantType := form.Get("grant_type")
	z.tokenCalls[grantType]++

	if status, ok := z.tokenFail.take(); ok {
		return forcedTokenFailure(status)
	}

	// Client authentication: HTTP Basic, or client_id and client_secret in
	// the body. Zoom answers 400 here, not 401: reported as
	// {"reason":"Invalid client_id or client_secret","error":"invalid_client"}
	// (github.com/JubaerHossain/zoom-laravel/issues/3).
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" || secret == "" {
		return oauthFail(http.StatusBadRequest, "invalid_client", "Client ID or client secret is missing.")
	}
	if id != z.ClientID || secret != z.ClientSecret {
		return oauthFail(http.StatusBadRequest, "invalid_client", "Invalid client_id or client_secret")
	}

	switch grantType {
	case "authorization_code":
		return z.exchangeCode(form)
	case "refresh_token":
		return z.refreshGrant(form)
	case "":
		return oauthFail(http.StatusBadRequest, "invalid_request", "Missing grant type")
	default:
		// Reported as {"reason":"unsupported grant type","error":"unsupported_grant_type"}
		// (github.com/JubaerHossain/zoom-laravel/issues/4).
		return oauthFail(http.StatusBadRequest, "unsupported_grant_type", "unsupported grant type")
	}
}

// exchangeCode redeems an authorization code. Any attempt uses the code up.
func (z *Zoom) exchangeCode(form url.Values) reply {
	code := form.Get("code")
	c := z.codes[code]
	delete(z.codes, code)
	// Reported as {"reason":"Invalid authorization code <code>","error":"invalid_grant"}
	// for unknown, used and expired codes, and for a code_verifier that does
	// not match the challenge (devforum.zoom.us/t/77062).
	invalid := oauthFail(http.StatusBadRequest, "invalid_grant", "Invalid authorization code "+code)
	if c == nil || !z.now().Before(c.expires) || z.users[c.userID] == nil {
		return invalid
	}
	if form.Get("redirect_uri") != c.redirectURI {
		// Zoom's error list: 4709 "Redirect URI mismatch."; error code
		// as RFC 6749 section 5.2 says.
		return oauthFail(http.StatusBadRequest, "invalid_grant", "Redirect URI mismatch.")
	}
	if c.challenge != "" && !pkceMatches(c.method, c.challenge, form.Get("code_verifier")) {
		return invalid
	}
	return reply{status: http.StatusOK, body: z.issue(c.userID)}
}

// refreshGrant rotates a refresh token: the old one is refused from now on.
func (z *Zoom) refreshGrant(form url.Values) reply {
	rt := form.Get("refresh_token")
	g := z.refresh[rt]
	if g == nil || !z.now().Before(g.expires) || z.users[g.userID] == nil {
		// Reported as {"reason":"Invalid Token!","error":"invalid_grant"}
		// (github.com/raycast/extensions/issues/10896).
		return oauthFail(http.StatusBadRequest, "invalid_grant", "Invalid Token!")
	}
	delete(z.refresh, rt)
	return reply{status: http.StatusOK, body: z.issue(g.userID)}
}

func pkceMatches(method, challenge, verifier string) bool {
	if verifier == "" {
		return false
	}
	if method == "plain" {
		return verifier == challenge
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:]) == challenge
}

func forcedTokenFailure(status int) reply {
	code := "server_error"
	switch {
	case status == http.StatusUnauthorized:
		code = "invalid_client"
	case status == http.StatusTooManyRequests:
		code = "too_many_requests"
	case status < 500:
		code = "invalid_request"
	}
	rp := oauthFail(status, code, http.StatusText(status))
	rp.retryAfter = status == http.StatusTooManyRequests
	return rp
}
