package fakezoom

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apiError is the body of Zoom's REST errors, e.g.
// {"code":124,"message":"Invalid access token."}.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func apiFail(status, code int, message string) reply {
	return reply{status: status, body: apiError{Code: code, Message: message}}
}

var (
	// 401 for a missing, unknown or revoked token, and for an expired one
	// (both reported in public issue trackers, e.g.
	// github.com/tl-its-umich-edu/remote-office-hours-queue/issues/512).
	errInvalidToken = apiFail(http.StatusUnauthorized, 124, "Invalid access token.")
	errExpiredToken = apiFail(http.StatusUnauthorized, 124, "Access token is expired.")
	// Zoom's per-second limit; Retry-After is added by rateLimited.
	errRateLimited = apiFail(http.StatusTooManyRequests, 429,
		"You have reached the maximum per-second rate limit for this API. Try again later.")
)

func rateLimited() reply {
	rp := errRateLimited
	rp.retryAfter = true
	return rp
}

// meetingNotFound is reported as 404
// {"code":3001,"message":"Meeting does not exist: 82541217658."}.
func meetingNotFound(id string) reply {
	return apiFail(http.StatusNotFound, 3001, "Meeting does not exist: "+id+".")
}

func userNotFound(id string) reply {
	return apiFail(http.StatusNotFound, 1001, "User does not exist: "+id+".")
}

func invalidField(name string) reply {
	return apiFail(http.StatusBadRequest, 300, "Invalid field: "+name+".")
}

// scope lists the scopes that allow a call: the first two (the granular
// scope and its :admin form) are named in Zoom's 4711 error, the classic
// scopes after them are accepted too.
type scope []string

var (
	scopeUser         = scope{"user:read:user", "user:read:user:admin", "user:read", "user:read:admin"}
	scopeMeeting      = scope{"meeting:read:meeting", "meeting:read:meeting:admin", "meeting:read", "meeting:read:admin"}
	scopeListMeetings = scope{"meeting:read:list_meetings", "meeting:read:list_meetings:admin", "meeting:read", "meeting:read:admin"}
	scopeToken        = scope{"user:read:token", "user:read:token:admin"}
	scopeZAK          = scope{"user:read:zak", "user:read:zak:admin", "user_zak:read", "user:read", "user:read:admin"}
)

// check answers 400 code 4711 unless the user holds one of the scopes, as
// reported: {"code":4711,"message":"Invalid access token, does not contain scopes:[a, b]."}
// (github.com/lanec/zoom-batch-downloader/issues/34).
func (s scope) check(u *User) (reply, bool) {
	for _, have := range u.Scopes {
		if slices.Contains(s, have) {
			return reply{}, true
		}
	}
	return apiFail(http.StatusBadRequest, 4711,
		"Invalid access token, does not contain scopes:["+strings.Join(s[:2], ", ")+"]."), false
}

// admin reports whether the user holds the :admin form of the scope.
func (s scope) admin(u *User) bool {
	for _, have := range u.Scopes {
		if strings.HasSuffix(have, ":admin") && slices.Contains(s, have) {
			return true
		}
	}
	return false
}

// serveAPI answers everything under /v2/.
func (z *Zoom) serveAPI(w http.ResponseWriter, r *http.Request) {
	z.mu.Lock()
	rp := z.apiReply(r)
	z.mu.Unlock()
	rp.write(w)
}

func (z *Zoom) apiReply(r *http.Request) reply {
	path := apiPath(r.URL.Path)
	z.apiCalls[path]++

	if status, ok := z.apiFail[path].take(); ok {
		switch status {
		case http.StatusUnauthorized:
			return errInvalidToken
		case http.StatusTooManyRequests:
			return rateLimited()
		}
		return apiFail(status, status, http.StatusText(status))
	}
	if z.rateLimit > 0 {
		z.rateLimit--
		return rateLimited()
	}

	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	g := z.access[token]
	if !strings.EqualFold(scheme, "Bearer") || g == nil || z.users[g.userID] == nil {
		return errInvalidToken
	}
	if !z.now().Before(g.expires) {
		return errExpiredToken
	}
	me := z.users[g.userID]

	if r.Method != http.MethodGet {
		return apiFail(http.StatusMethodNotAllowed, 405, "Method Not Allowed")
	}
	seg := strings.Split(strings.Trim(path, "/"), "/")
	q := r.URL.Query()
	switch {
	case len(seg) == 2 && seg[0] == "users":
		return z.getUser(me, seg[1])
	case len(seg) == 3 && seg[0] == "users" && seg[2] == "meetings":
		return z.listMeetings(me, seg[1], q)
	case len(seg) == 3 && seg[0] == "users" && seg[2] == "token":
		return z.userToken(me, seg[1], q)
	case len(seg) == 2 && seg[0] == "meetings":
		return z.getMeeting(me, seg[1])
	}
	return apiFail(http.StatusNotFound, 404, "Not Found")
}

// resolveUser finds {userId}: "me", the caller's own id or email, or another
// user of the caller's account when the caller holds the :admin scope.
func (z *Zoom) resolveUser(me *User, id string, s scope) (*User, bool) {
	if id == "me" || id == me.ID || strings.EqualFold(id, me.Email) {
		return me, true
	}
	if !s.admin(me) {
		return nil, false
	}
	for _, u := range z.users {
		if (u.ID == id || strings.EqualFold(u.Email, id)) && u.AccountID == me.AccountID {
			return u, true
		}
	}
	return nil, false
}

// GET /users/{userId}
func (z *Zoom) getUser(me *User, id string) reply {
	if rp, ok := scopeUser.check(me); !ok {
		return rp
	}
	u, ok := z.resolveUser(me, id, scopeUser)
	if !ok {
		return userNotFound(id)
	}
	return reply{status: http.StatusOK, body: userJSONOf(u)}
}

// GET /users/{userId}/meetings?type=scheduled|live|upcoming&page_size&next_page_token
func (z *Zoom) listMeetings(me *User, id string, q url.Values) reply {
	if rp, ok := scopeListMeetings.check(me); !ok {
		return rp
	}
	u, ok := z.resolveUser(me, id, scopeListMeetings)
	if !ok {
		return userNotFound(id)
	}
	now := z.now()
	var keep func(*Meeting) bool
	switch q.Get("type") {
	case "", "scheduled":
		keep = func(m *Meeting) bool { return true }
	case "live":
		keep = func(m *Meeting) bool { return m.Status == "started" }
	case "upcoming":
		keep = func(m *Meeting) bool { return !m.StartTime.Before(now) }
	default:
		return invalidField("type")
	}
	pageSize := 30
	if s := q.Get("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return invalidField("page_size")
		}
		pageSize = min(n, 300)
	}
	offset := 0
	if t := q.Get("next_page_token"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "fakezoom-offset:"))
		if err != nil || err2 != nil || n < 0 {
			return invalidField("next_page_token")
		}
		offset = n
	}

	var all []*Meeting
	for _, m := range z.meetings {
		// Instant meetings are never listed: only scheduled ones are.
		if m.HostID == u.ID && m.Type != 1 && keep(m) {
			all = append(all, m)
		}
	}
	slices.SortFunc(all, func(a, b *Meeting) int {
		if c := a.StartTime.Compare(b.StartTime); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	page := all[min(offset, len(all)):]
	next := ""
	if len(page) > pageSize {
		page = page[:pageSize]
		next = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "fakezoom-offset:%d", offset+pageSize))
	}
	items := make([]meetingItemJSON, 0, len(page))
	for _, m := range page {
		items = append(items, meetingItem(m))
	}
	return reply{status: http.StatusOK, body: meetingListJSON{
		PageSize:      pageSize,
		TotalRecords:  len(all),
		NextPageToken: next,
		Meetings:      items,
	}}
}

// GET /meetings/{meetingId}: the meeting's number; visible to its host, and
// to users of the host's account holding the :admin scope.
func (z *Zoom) getMeeting(me *User, id string) reply {
	if rp, ok := scopeMeeting.check(me); !ok {
		return rp
	}
	n, err := strconv.ParseInt(id, 10, 64)
	m := z.meetings[n]
	if err != nil || m == nil {
		return meetingNotFound(id)
	}
	if m.HostID != me.ID {
		host := z.users[m.HostID]
		if host == nil || host.AccountID != me.AccountID || !scopeMeeting.admin(me) {
			return meetingNotFound(id)
		}
	}
	return reply{status: http.StatusOK, body: meetingJSONOf(m)}
}

// GET /users/{userId}/token?type=onbehalf|zak[&meeting_id=…]
func (z *Zoom) userToken(me *User, id string, q url.Values) reply {
	typ := q.Get("type")
	var s scope
	switch typ {
	case "onbehalf":
		s = scopeToken
	case "zak":
		s = scopeZAK
	default:
		return invalidField("type")
	}
	if rp, ok := s.check(me); !ok {
		return rp
	}
	u, ok := z.resolveUser(me, id, s)
	if !ok {
		return userNotFound(id)
	}
	if typ == "zak" {
		return reply{status: http.StatusOK, body: tokenJSON{Token: "fzzak_" + rand.Text()}}
	}
	var meetingID int64
	if s := q.Get("meeting_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || z.meetings[n] == nil {
			return meetingNotFound(s)
		}
		meetingID = n
	}
	t := "fzobf_" + rand.Text()
	z.obf[t] = obfGrant{userID: u.ID, meetingID: meetingID}
	return reply{status: http.StatusOK, body: tokenJSON{Token: t}}
}

// Wire shapes.

const zoomTime = "2006-01-02T15:04:05Z"

func formatTime(t time.Time) string { return t.UTC().Format(zoomTime) }

type tokenJSON struct {
	Token string `json:"token"`
}

type userJSON struct {
	ID                 string   `json:"id"`
	FirstName          string   `json:"first_name"`
	LastName           string   `json:"last_name"`
	DisplayName        string   `json:"display_name"`
	Email              string   `json:"email"`
	Type               int      `json:"type"`
	RoleName           string   `json:"role_name"`
	PMI                int64    `json:"pmi"`
	UsePMI             bool     `json:"use_pmi"`
	PersonalMeetingURL string   `json:"personal_meeting_url"`
	Timezone           string   `json:"timezone"`
	Verified           int      `json:"verified"`
	Dept               string   `json:"dept"`
	PicURL             string   `json:"pic_url"`
	Language           string   `json:"language"`
	PhoneNumber        string   `json:"phone_number"`
	Status             string   `json:"status"`
	RoleID             string   `json:"role_id"`
	AccountID          string   `json:"account_id"`
	Cluster            string   `json:"cluster"`
	GroupIDs           []string `json:"group_ids"`
	LoginTypes         []int    `json:"login_types"`
}

func userJSONOf(u *User) userJSON {
	return userJSON{
		ID:                 u.ID,
		FirstName:          u.FirstName,
		LastName:           u.LastName,
		DisplayName:        u.DisplayName,
		Email:              u.Email,
		Type:               u.Type,
		RoleName:           "Member",
		PMI:                u.PMI,
		PersonalMeetingURL: fmt.Sprintf("https://zoom.us/j/%d", u.PMI),
		Timezone:           u.Timezone,
		Verified:           1,
		Language:           "en-US",
		Status:             u.Status,
		RoleID:             "2",
		AccountID:          u.AccountID,
		Cluster:            "us05",
		GroupIDs:           []string{},
		LoginTypes:         []int{100},
	}
}

type meetingJSON struct {
	UUID              string `json:"uuid"`
	ID                int64  `json:"id"`
	HostID            string `json:"host_id"`
	HostEmail         string `json:"host_email"`
	AssistantID       string `json:"assistant_id"`
	Topic             string `json:"topic"`
	Type              int    `json:"type"`
	Status            string `json:"status"`
	StartTime         string `json:"start_time"`
	Duration          int    `json:"duration"`
	Timezone          string `json:"timezone"`
	Agenda            string `json:"agenda"`
	CreatedAt         string `json:"created_at"`
	StartURL          string `json:"start_url"`
	JoinURL           string `json:"join_url"`
	Password          string `json:"password"`
	H323Password      string `json:"h323_password"`
	PSTNPassword      string `json:"pstn_password"`
	EncryptedPassword string `json:"encrypted_password"`
	PreSchedule       bool   `json:"pre_schedule"`
}

func meetingJSONOf(m *Meeting) meetingJSON {
	return meetingJSON{
		UUID:              m.UUID,
		ID:                m.ID,
		HostID:            m.HostID,
		HostEmail:         m.HostEmail,
		Topic:             m.Topic,
		Type:              m.Type,
		Status:            m.Status,
		StartTime:         formatTime(m.StartTime),
		Duration:          m.Duration,
		Timezone:          m.Timezone,
		Agenda:            m.Agenda,
		CreatedAt:         formatTime(m.CreatedAt),
		StartURL:          fmt.Sprintf("https://zoom.us/s/%d", m.ID),
		JoinURL:           m.JoinURL,
		Password:          m.Password,
		H323Password:      m.Password,
		PSTNPassword:      m.Password,
		EncryptedPassword: m.EncryptedPassword,
	}
}

type meetingItemJSON struct {
	UUID      string `json:"uuid"`
	ID        int64  `json:"id"`
	HostID    string `json:"host_id"`
	Topic     string `json:"topic"`
	Type      int    `json:"type"`
	StartTime string `json:"start_time"`
	Duration  int    `json:"duration"`
	Timezone  string `json:"timezone"`
	Agenda    string `json:"agenda,omitempty"`
	CreatedAt string `json:"created_at"`
	JoinURL   string `json:"join_url"`
}

func meetingItem(m *Meeting) meetingItemJSON {
	return meetingItemJSON{
		UUID:      m.UUID,
		ID:        m.ID,
		HostID:    m.HostID,
		Topic:     m.Topic,
		Type:      m.Type,
		StartTime: formatTime(m.StartTime),
		Duration:  m.Duration,
		Timezone:  m.Timezone,
		Agenda:    m.Agenda,
		CreatedAt: formatTime(m.CreatedAt),
		JoinURL:   m.JoinURL,
	}
}

type meetingListJSON struct {
	PageSize      int               `json:"page_size"`
	TotalRecords  int               `json:"total_records"`
	NextPageToken string            `json:"next_page_token"`
	Meetings      []meetingItemJSON `json:"meetings"`
}
