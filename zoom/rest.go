package zoom

import (
	"context"
	"net/url"
	"strconv"
)

// Meeting is what onair reads of GET /meetings/{meetingId}.
type Meeting struct {
	UUID      string `json:"uuid"`
	ID        int64  `json:"id"` // the meeting number
	HostID    string `json:"host_id"`
	Topic     string `json:"topic"`
	Type      int    `json:"type"`
	Status    string `json:"status"` // "waiting" or "started"
	StartTime string `json:"start_time"`
	Duration  int    `json:"duration"`
	Timezone  string `json:"timezone"`
	JoinURL   string `json:"join_url"`
	Password  string `json:"password"`
}

// Number is the meeting number as text.
func (m Meeting) Number() string { return strconv.FormatInt(m.ID, 10) }

// GetMeeting reads a meeting by its number with a user's access token.
func (c *Client) GetMeeting(ctx context.Context, access, number string) (Meeting, error) {
	var m Meeting
	err := c.get(ctx, access, "/meetings/"+url.PathEscape(number), &m)
	return m, err
}

// LiveMeetings lists the user's live scheduled meetings (Zoom leaves instant
// meetings out of this list), every page.
func (c *Client) LiveMeetings(ctx context.Context, access, userID string) ([]Meeting, error) {
	var all []Meeting
	next := ""
	for {
		q := url.Values{"type": {"live"}, "page_size": {"300"}}
		if next != "" {
			q.Set("next_page_token", next)
		}
		var page struct {
			NextPageToken string    `json:"next_page_token"`
			Meetings      []Meeting `json:"meetings"`
		}
		if err := c.get(ctx, access, "/users/"+url.PathEscape(userID)+"/meetings?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Meetings...)
		if page.NextPageToken == "" {
			return all, nil
		}
		next = page.NextPageToken
	}
}

// OBFToken gets an on-behalf-of token for a bot joining the meeting for the
// user (scope user:read:token).
func (c *Client) OBFToken(ctx context.Context, access, userID, number string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	q := url.Values{"type": {"onbehalf"}, "meeting_id": {number}}
	if err := c.get(ctx, access, "/users/"+url.PathEscape(userID)+"/token?"+q.Encode(), &out); err != nil {
		return "", err
	}
	return out.Token, nil
}
