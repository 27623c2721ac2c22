package web

import (
	"encoding/json"
	"strconv"

	"onair/hub"
	"onair/store"
)

// Publish returns the store's OnCommit hook: each committed entry is encoded
// once into its frame and handed to the hub for all of its user's tabs, and
// deauthorized users' sockets and ended sessions' sockets are dropped (on
// every node: on PostgreSQL this hears every node's commits). Bot requests that end cancelled
// (by the user, or by the end of a meeting they were never sent to) are
// counted in m, when given.
func Publish(h *hub.Hub, m *Metrics) func(store.Committed) {
	return func(c store.Committed) {
		for _, e := range c.Entries {
			// Encoded only for a user with a tab open (most users of a burst
			// of webhooks have none; this runs on the commit path). A tab
			// that subscribes just after misses the entry either way, as
			// with Publish, and reads it from the log.
			if h.Tabs(e.User) > 0 {
				h.Publish(e.User, hub.Message{Seq: e.Seq, Type: e.Type, Frame: encodeEntry(e), Received: e.Received})
			}
			if m != nil && c.Local && e.Type == store.TypeBotUpdated {
				var b struct{ State string }
				if json.Unmarshal(e.Data, &b) == nil && b.State == store.BotCancelled {
					m.BotRequests.WithLabelValues("cancelled").Inc()
				}
			}
		}
		for _, u := range c.Deauthorized {
			h.Drop(u, hub.ReasonDeauthorized)
		}
		for _, lo := range c.Logouts {
			if lo.Session == "" {
				h.DropSessions(lo.User, hub.ReasonLogout)
			} else {
				h.DropTag(lo.User, lo.Session, hub.ReasonLogout)
			}
		}
	}
}

// encodeEntry writes {"type","seq","epoch","at",<object>} by hand: the
// object is already JSON, and this runs once per event on the commit path.
func encodeEntry(e store.Entry) []byte {
	key := "meeting"
	if e.Type == "bot.updated" {
		key = "bot"
	}
	b := make([]byte, 0, len(e.Data)+len(e.Epoch)+96)
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, e.Type)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"epoch":`...)
	b = strconv.AppendQuote(b, e.Epoch)
	b = append(b, `,"at":"`...)
	b = e.At.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","`...)
	b = append(b, key...)
	b = append(b, `":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// welcomeFrame is the server's first frame.
type welcomeFrame struct {
	Type     string           `json:"type"`
	User     string           `json:"user"`
	Epoch    string           `json:"epoch"`
	Seq      int64            `json:"seq"`
	Resumed  bool             `json:"resumed"`
	Meetings *[]store.Meeting `json:"meetings,omitempty"`
	Bots     *[]store.Bot     `json:"bots,omitempty"`
}

func encodeWelcome(user string, w store.Welcome) []byte {
	f := welcomeFrame{Type: "welcome", User: user, Epoch: w.Epoch, Seq: w.Seq, Resumed: w.Resumed}
	if !w.Resumed {
		// A snapshot always carries both lists, empty or not.
		meetings, bots := w.Meetings, w.Bots
		if meetings == nil {
			meetings = []store.Meeting{}
		}
		if bots == nil {
			bots = []store.Bot{}
		}
		f.Meetings, f.Bots = &meetings, &bots
	}
	b, _ := json.Marshal(f)
	return b
}

// helloFrame is the client's first frame.
type helloFrame struct {
	Type  string `json:"type"`
	Token string `json:"token"`
	Since *struct {
		Epoch string `json:"epoch"`
		Seq   *int64 `json:"seq"`
	} `json:"since"`
}
