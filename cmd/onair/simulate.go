package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"onair/zoom"
)

// simulated is what `onair simulate` remembers beside the database, so
// `ended` can follow `started` without the operator copying uuids.
type simulated struct {
	LastStarted map[string]string           `json:"last_started"` // user → uuid
	Meetings    map[string]simulatedMeeting `json:"meetings"`     // uuid → meeting
}

type simulatedMeeting struct {
	ID        string `json:"id"`
	HostID    string `json:"host_id"`
	Topic     string `json:"topic"`
	StartTime string `json:"start_time"`
}

var simulateEvents = map[string]string{
	"started":      zoom.EventMeetingStarted,
	"ended":        zoom.EventMeetingEnded,
	"joined":       zoom.EventParticipantJoined,
	"left":         zoom.EventParticipantLeft,
	"deauthorized": zoom.EventAppDeauthorized,
}

func runSimulate(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	user := o.add("user", "", "", "Zoom user id: the host (started, ended), the participant (joined, left), or the user who deauthorized")
	meeting := o.add("meeting", "", "", "meeting uuid (default: a new one for started, else the user's last started)")
	host := o.add("host", "", "", "host of the meeting for joined/left (default: who started it, else --user)")
	topic := o.add("topic", "", "Simulated meeting", "meeting topic")
	target := o.add("url", "", "http://localhost:8080/webhooks/zoom", "webhook URL of the running server")
	secret := o.add("zoom-webhook-secret", "ZOOM_WEBHOOK_SECRET_TOKEN", "", "Zoom Secret Token(s); the first signs")
	db := o.add("db", "ONAIR_DB", "./data/onair.db", "SQLite file holding the dev-mode webhook secret")
	dbURL := o.add("database-url", "ONAIR_DATABASE_URL", "", "PostgreSQL URL: the dev-mode secret is read from there")
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		if err := o.parse(args); err != nil {
			return err
		}
		return usageErrorf("name the event: started, ended, joined, left or deauthorized")
	}
	kind := args[0]
	event, ok := simulateEvents[kind]
	if !ok {
		return usageErrorf("unknown event %q: want started, ended, joined, left or deauthorized", kind)
	}
	if err := o.parse(args[1:]); err != nil {
		return err
	}
	if user.str() == "" {
		return usageErrorf("--user is required")
	}
	key, err := signingSecret(ctx, secret, db, dbURL, "webhook")
	if err != nil {
		return err
	}
	memPath := db.str() + ".simulate.json"
	mem := loadSimulated(memPath)
	now := time.Now().UTC()
	var payload map[string]any
	if kind == "deauthorized" {
		payload = map[string]any{
			"account_id":           "simulated",
			"user_id":              user.str(),
			"client_id":            "simulated",
			"deauthorization_time": now.Format("2006-01-02T15:04:05.000Z"),
			"event_ts":             now.Format("2006-01-02 15:04:05"),
			"signature":            "simulated",
		}
	} else {
		uuid := meeting.str()
		if uuid == "" && kind == "started" {
			uuid = zoom.NewMeetingUUID()
		}
		if uuid == "" {
			uuid = mem.LastStarted[user.str()]
		}
		if uuid == "" {
			return usageErrorf("no --meeting given and no meeting started by %s to use", user.str())
		}
		m, known := mem.Meetings[uuid]
		if !known {
			m = simulatedMeeting{ID: zoom.NewMeetingNumber(), HostID: user.str(), Topic: topic.str(), StartTime: now.Format(time.RFC3339)}
			if kind == "joined" || kind == "left" {
				if host.str() != "" {
					m.HostID = host.str()
				}
			}
		}
		if o.explicit["topic"] {
			m.Topic = topic.str()
		}
		obj := map[string]any{
			"id": m.ID, "uuid": uuid, "host_id": m.HostID, "topic": m.Topic,
			"type": 1, "start_time": m.StartTime, "timezone": "", "duration": 0,
		}
		switch kind {
		case "ended":
			obj["end_time"] = now.Format(time.RFC3339)
		case "joined", "left":
			p := map[string]any{
				"user_id": strconv.FormatInt(now.UnixNano()%100000000, 10), "user_name": user.str(),
				"id": user.str(), "participant_uuid": zoom.NewMeetingUUID(), "email": "",
			}
			if kind == "joined" {
				p["join_time"] = now.Format(time.RFC3339)
			} else {
				p["leave_time"], p["leave_reason"] = now.Format(time.RFC3339), "left the meeting"
			}
			obj["participant"] = p
		}
		payload = map[string]any{"account_id": "simulated", "object": obj}
		if kind == "started" {
			mem.LastStarted[user.str()] = uuid
			mem.Meetings[uuid] = m
		}
	}
	body := map[string]any{"event": event, "payload": payload}
	if kind != "deauthorized" {
		body["event_ts"] = now.UnixMilli()
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	status, err := postSigned(ctx, target.str(), key, raw)
	if err != nil {
		return err
	}
	if kind == "started" && status[0] == '2' { // a refused start is not the user's last meeting
		if err := saveSimulated(memPath, mem); err != nil {
			fmt.Fprintf(stderr, "onair: could not remember the meeting: %v\n", err)
		}
		fmt.Fprintf(stdout, "meeting %s\n", payload["object"].(map[string]any)["uuid"])
	}
	fmt.Fprintln(stdout, status)
	if status[0] != '2' {
		return fmt.Errorf("webhook answered %s", status)
	}
	return nil
}

func postSigned(ctx context.Context, target string, secret, body []byte) (string, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return "", usageErrorf("--url: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Zoom Marketplace/1.0a (onair simulate)")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(secret, ts, body))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("send webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.Status, nil
}

func loadSimulated(path string) *simulated {
	mem := &simulated{}
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, mem)
	}
	if mem.LastStarted == nil {
		mem.LastStarted = map[string]string{}
	}
	if mem.Meetings == nil {
		mem.Meetings = map[string]simulatedMeeting{}
	}
	return mem
}

func saveSimulated(path string, mem *simulated) error {
	b, err := json.MarshalIndent(mem, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	// On PostgreSQL the SQLite path's folder may not exist: it holds only this.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
