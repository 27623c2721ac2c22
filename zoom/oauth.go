package zoom

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client speaks Zoom's OAuth (authorization code with PKCE, refresh with
// rotation) and the REST calls onair makes with a user's token.
type Client struct {
	ClientID     string
	ClientSecret string
	OAuthURL     string // base of /oauth/authorize and /oauth/token
	APIURL       string // base of the REST API, e.g. https://api.zoom.us/v2
	HTTP         *http.Client
	// Now is the clock that turns expires_in into an expiry (default time.Now).
	Now func() time.Time
}

// Token is what Zoom's token endpoint grants.
type Token struct {
	Access  string
	Refresh string
	Expiry  time.Time
	Scope   string
}

// Error is a refusal from Zoom, with what Zoom said.
type Error struct {
	Status int    // HTTP status
	Code   string // OAuth "error" (invalid_grant, …) or the REST error code
	Reason string // Zoom's reason or message
	// RetryAfter is Zoom's Retry-After on a 429, zero otherwise.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("zoom: HTTP %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// IsInvalidGrant says Zoom refused a code or refresh token for good: the
// user must sign in again.
func IsInvalidGrant(err error) bool {
	var ze *Error
	return errors.As(err, &ze) && ze.Code == "invalid_grant"
}

// NewVerifier returns a PKCE code verifier (RFC 7636: 43 characters).
func NewVerifier() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Challenge is the S256 challenge of a verifier.
func Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthorizeURL is where the browser goes to sign in.
func (c *Client) AuthorizeURL(redirectURI, state, verifier string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ClientID},
		"redirect_uri":          {redirectURI},
		"state":                 {state},
		"code_challenge":        {Challenge(verifier)},
		"code_challenge_method": {"S256"},
	}
	return strings.TrimSuffix(c.OAuthURL, "/") + "/oauth/authorize?" + q.Encode()
}

// Exchange trades an authorization code for tokens.
func (c *Client) Exchange(ctx context.Context, code, redirectURI, verifier string) (Token, error) {
	return c.token(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
}

// Refresh trades a refresh token for new tokens. Zoom rotates the refresh
// token: the old one is dead once this returns.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	return c.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

func (c *Client) token(ctx context.Context, form url.Values) (Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.OAuthURL, "/")+"/oauth/token",
		strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ClientID, c.ClientSecret)
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
		Scope        string `json:"scope"`
	}
	if err := c.do(req, &body); err != nil {
		return Token{}, err
	}
	if body.AccessToken == "" || body.RefreshToken == "" {
		return Token{}, errors.New("zoom: token response without access_token or refresh_token")
	}
	return Token{Access: body.AccessToken, Refresh: body.RefreshToken, Scope: body.Scope,
		Expiry: c.now().Add(time.Duration(body.ExpiresIn) * time.Second)}, nil
}

// Me is the signed-in user, from GET /users/me.
type Me struct {
	ID          string `json:"id"`
	Email       string `json:"email"`
	DisplayName string `json:"display_name"`
	FirstName   string `json:"first_name"`
	LastName    string `json:"last_name"`
}

// Name is how the user is shown: Zoom's display name, else first and last.
func (m Me) Name() string {
	if m.DisplayName != "" {
		return m.DisplayName
	}
	return strings.TrimSpace(m.FirstName + " " + m.LastName)
}

// Me reads the user the access token belongs to.
func (c *Client) Me(ctx context.Context, access string) (Me, error) {
	var me Me
	if err := c.get(ctx, access, "/users/me", &me); err != nil {
		return Me{}, err
	}
	if me.ID == "" {
		return Me{}, errors.New("zoom: /users/me without an id")
	}
	return me, nil
}

func (c *Client) get(ctx context.Context, access, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.APIURL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+access)
	return c.do(req, into)
}

// do sends req and decodes a 2xx JSON answer into into; anything else
// becomes an *Error carrying what Zoom said.
func (c *Client) do(req *http.Request, into any) error {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("zoom: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("zoom: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return zoomError(resp, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("zoom: malformed answer from %s: %w", req.URL.Path, err)
	}
	return nil
}

// zoomError reads both of Zoom's error shapes: OAuth's {"reason","error"}
// and REST's {"code","message"}.
func zoomError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var oauth struct {
		Error   string          `json:"error"`
		Reason  string          `json:"reason"`
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &oauth) == nil {
		e.Code, e.Reason = oauth.Error, oauth.Reason
		if e.Code == "" && len(oauth.Code) > 0 {
			e.Code = strings.Trim(string(oauth.Code), `"`)
		}
		if e.Reason == "" {
			e.Reason = oauth.Message
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if secs, err := time.ParseDuration(resp.Header.Get("Retry-After") + "s"); err == nil && secs > 0 {
			e.RetryAfter = secs
		}
	}
	return e
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
