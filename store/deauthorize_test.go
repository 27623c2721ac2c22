package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"onair/store"
)

// dumpRows reads every row a query returns, each as one line of text.
func dumpRows(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		var fields []string
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			fields = append(fields, fmt.Sprintf("%s=%v", cols[i], v))
		}
		out = append(out, strings.Join(fields, " | "))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

// dueItem finds the outbox item of a type for a user's request.
func dueItem(t *testing.T, st *store.Store, requestID, typ string) store.OutboxItem {
	t.Helper()
	items, _, err := st.DueOutbox(context.Background(), 100)
	if err != nil {
		t.Fatalf("due outbox: %v", err)
	}
	for _, it := range items {
		if it.RequestID == requestID && it.Type == typ {
			return it
		}
	}
	t.Fatalf("no %s item due for %s among %+v", typ, requestID, items)
	return store.OutboxItem{}
}

// launcherBody is the body the dispatcher builds and keeps for an item.
func launcherBody(t *testing.T, it store.OutboxItem) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"type": it.Type, "request_id": it.RequestID, "meeting": it.Meeting,
		"requested_by": map[string]string{"id": it.User, "email": it.UserEmail},
		"requested_at": store.Time{Time: it.RequestedAt},
		"join":         map[string]string{"meeting_number": it.Meeting.ID, "join_url": "https://zoom.us/j/" + it.Meeting.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeauthorizeForgetsEveryTrace: app_deauthorized deletes everything of
// the user in one transaction, and nothing of anyone else, across every
// table the database has.
func TestDeauthorizeForgetsEveryTrace(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		// Ids and secrets that no hash or random value can contain by chance.
		const gone, bob = "Gone_UserQzX-9", "Bob_UserKp7-2"
		const goneSession, bobSession = "gone-session-Qz9xx", "bob-session-Kp7xx"
		goneUser := store.User{ID: gone, Email: "gone_mail_Qz9@example.com", Name: "Gone_Name_Qz9"}
		bobUser := store.User{ID: bob, Email: "bob_mail_Kp7@example.com", Name: "Bob_Name_Kp7"}
		goneTok := store.ZoomToken{Access: "GoneAccess_Qz9", Refresh: "GoneRefresh_Qz9", Expiry: t0.Add(time.Hour), Scope: "meeting:read"}
		bobTok := store.ZoomToken{Access: "BobAccess_Kp7", Refresh: "BobRefresh_Kp7", Expiry: t0.Add(time.Hour), Scope: "meeting:read"}
		ctx := context.Background()
		clk := newClock(t0)
		rec := &recorder{}
		path := dbPath(t)
		st := open(t, store.Options{Path: path, Now: clk.Now, OnCommit: rec.OnCommit, SecretKey: testSecretKey(7), Launcher: true})
		db := rawDB(t, path)
		step := func() time.Time { clk.Add(time.Second); return clk.Now() }

		exp := t0.Add(30 * 24 * time.Hour)
		mustSignIn(t, st, goneUser, goneSession, exp, &goneTok)
		mustSignIn(t, st, bobUser, bobSession, exp, &bobTok)
		if _, err := st.SetAutoSendBot(ctx, gone, true); err != nil {
			t.Fatalf("settings: %v", err)
		}
		bots := map[string]string{} // meeting uuid → gone's request id
		goneBot := func(uuid string) string {
			t.Helper()
			for _, e := range rec.EntriesOf(gone) {
				if e.Type == store.TypeBotUpdated {
					if b := botOf(t, e); b.MeetingUUID == uuid {
						return b.RequestID
					}
				}
			}
			t.Fatalf("no bot request of %s for %s", gone, uuid)
			return ""
		}

		// 1: their own meeting; the auto-sent bot was dispatched, and a notice
		// (they left) is pending for the launcher.
		MustAccept(t, st, started(gone, uuidN(1), step()))
		bots[uuidN(1)] = goneBot(uuidN(1))
		it := dueItem(t, st, bots[uuidN(1)], store.OutboxRequested)
		if err := st.ReadyToSend(ctx, it, launcherBody(t, it), "", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := st.OutboxDelivered(ctx, it); err != nil {
			t.Fatal(err)
		}
		MustAccept(t, st, left(gone, uuidN(1), gone, step()))
		dueItem(t, st, bots[uuidN(1)], store.OutboxOwnerLeft)
		// 2: their own meeting, ended (its unsent bot was cancelled).
		MustAccept(t, st, started(gone, uuidN(2), step()))
		bots[uuidN(2)] = goneBot(uuidN(2))
		MustAccept(t, st, ended(gone, uuidN(2), step()))
		// 3: bob's meeting, which they joined; bob asked for the bot.
		MustAccept(t, st, started(bob, uuidN(3), step()))
		MustAccept(t, st, joined(bob, uuidN(3), gone, step()))
		mustRequestBot(t, st, bob, uuidN(3))
		// 4: their meeting, shared with bob, whose bot request was built for
		// the launcher (naming the meeting's host) and is being retried.
		MustAccept(t, st, started(gone, uuidN(4), step()))
		bots[uuidN(4)] = goneBot(uuidN(4))
		MustAccept(t, st, joined(gone, uuidN(4), bob, step()))
		bob4, _ := mustRequestBot(t, st, bob, uuidN(4))
		it = dueItem(t, st, bob4.RequestID, store.OutboxRequested)
		bob4Body := launcherBody(t, it)
		if !strings.Contains(bob4Body, `"host_id":"`+gone+`"`) {
			t.Fatalf("bob's request names the host as %q, want %q: %s", it.Meeting.HostID, gone, bob4Body)
		}
		if err := st.ReadyToSend(ctx, it, bob4Body, "", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := st.OutboxRetry(ctx, it, clk.Now().Add(time.Minute), "launcher answered 500"); err != nil {
			t.Fatal(err)
		}
		// 5: an instant meeting started by their own join, with a stranger.
		MustAccept(t, st, joined(gone, uuidN(5), gone, step()))
		MustAccept(t, st, left(gone, uuidN(5), "stranger", step()))
		// 6: bob's own meeting.
		MustAccept(t, st, started(bob, uuidN(6), step()))
		mustRequestBot(t, st, bob, uuidN(6))

		traces := []string{gone, goneUser.Email, goneUser.Name, goneTok.Access, goneTok.Refresh, goneSession,
			uuidN(1), uuidN(2), uuidN(5)}
		for _, id := range bots {
			traces = append(traces, id)
		}
		for _, s := range []string{gone, goneUser.Email, uuidN(1), uuidN(5), bots[uuidN(1)]} {
			if len(rowsContaining(t, db, s)) == 0 {
				t.Fatalf("%q is nowhere before the deauthorization: the check proves nothing", s)
			}
		}
		if got := countRows(t, db, `SELECT COUNT(*) FROM bot_outbox o JOIN bot_requests b ON b.id = o.request_id
			WHERE b.user_id = ? AND o.type = ?`, gone, store.OutboxOwnerLeft); got != 1 {
			t.Fatalf("pending owner.left notices of %s: got %d, want 1", gone, got)
		}
		if got := countRows(t, db, `SELECT COUNT(*) FROM bot_requests WHERE user_id = ? AND state = ?`, gone, store.BotDispatched); got != 1 {
			t.Fatalf("dispatched requests of %s: got %d, want 1", gone, got)
		}

		// What is bob's, before.
		bobRows := func() map[string][]string {
			return map[string][]string{
				"users":           dumpRows(t, db, `SELECT * FROM users WHERE id = ?`, bob),
				"sessions":        dumpRows(t, db, `SELECT * FROM sessions WHERE user_id = ?`, bob),
				"zoom_tokens":     dumpRows(t, db, `SELECT * FROM zoom_tokens WHERE user_id = ?`, bob),
				"bot_requests":    dumpRows(t, db, `SELECT * FROM bot_requests WHERE user_id = ? ORDER BY n`, bob),
				"meeting_members": dumpRows(t, db, `SELECT * FROM meeting_members WHERE user_id = ? ORDER BY meeting_n`, bob),
				"meetings": dumpRows(t, db, `SELECT * FROM meetings WHERE n IN
					(SELECT meeting_n FROM meeting_members WHERE user_id = ?) ORDER BY uuid`, bob),
				"events": dumpRows(t, db, `SELECT * FROM events WHERE user_id = ? ORDER BY seq`, bob),
				"bot_outbox": dumpRows(t, db, `SELECT o.n, o.request_id, o.type, o.detail, o.attempts, o.next_at, o.last_error, o.created_at
					FROM bot_outbox o JOIN bot_requests b ON b.id = o.request_id WHERE b.user_id = ? ORDER BY o.n`, bob),
			}
		}
		bobBefore := bobRows()
		bobLiveBefore := MustLive(t, st, bob)
		if len(bobLiveBefore) != 3 || len(bobBefore["bot_outbox"]) != 3 {
			t.Fatalf("bob: %d live meetings, %d outbox items; want 3 and 3", len(bobLiveBefore), len(bobBefore["bot_outbox"]))
		}
		deliveriesBefore := countRows(t, db, `SELECT COUNT(*) FROM delivery_keys`)

		commitsOf := func() []store.Committed {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return slices.Clone(rec.commits)
		}
		commitsBefore := len(commitsOf())
		deauthAt := step()
		MustAccept(t, st, deauthorized(gone, deauthAt))

		// One transaction, which tells the sockets to close.
		commits := commitsOf()[commitsBefore:]
		if len(commits) != 1 {
			t.Fatalf("the deauthorization committed %d transactions, want 1", len(commits))
		}
		if got, want := commits[0].Deauthorized, []string{gone}; !slices.Equal(got, want) {
			t.Fatalf("Committed.Deauthorized: got %q, want %q", got, want)
		}
		for _, e := range commits[0].Entries {
			if e.User == gone {
				t.Fatalf("the deauthorization pushed %s to them", e.Type)
			}
		}

		// No trace of them in any column of any row of any table.
		listTables := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
		if onPostgres(t) {
			listTables = `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`
		}
		tables := dumpRows(t, db, listTables)
		for _, want := range []string{"bot_outbox", "bot_requests", "deauthorizations", "deliveries", "delivery_keys", "events",
			"meeting_members", "meetings", "meta", "sessions", "users", "zoom_tokens"} {
			if !slices.Contains(tables, "name="+want) {
				t.Fatalf("tables: got %q, want %s among them", tables, want)
			}
		}
		for _, s := range traces {
			if found := rowsContaining(t, db, s); len(found) != 0 {
				t.Errorf("%q is still stored:\n%s", s, strings.Join(found, "\n"))
			}
		}
		// What is remembered is a keyed hash.
		hashes := dumpRows(t, db, `SELECT user_hash FROM deauthorizations WHERE deauthorized_at = ?`, deauthAt.UnixMilli())
		if len(hashes) != 1 || !regexp.MustCompile(`^user_hash=[0-9a-f]{64}$`).MatchString(hashes[0]) {
			t.Errorf("deauthorizations at %v: got %q, want one keyed hash", deauthAt, hashes)
		}
		if got := countRows(t, db, `SELECT COUNT(*) FROM delivery_keys`); got != deliveriesBefore+1 {
			t.Errorf("deliveries: got %d, want %d", got, deliveriesBefore+1)
		}
		wantUnknown(t, st, gone)
		wantNoSession(t, st, goneSession)

		// Bob's data is intact, except that the shared meeting no longer names
		// them as its host.
		bobAfter := bobRows()
		for table, before := range bobBefore {
			want := make([]string, len(before))
			for i, row := range before {
				want[i] = strings.ReplaceAll(row, gone, "")
			}
			if got := bobAfter[table]; !slices.Equal(got, want) {
				t.Errorf("bob's %s:\ngot  %s\nwant %s", table, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
			}
		}
		var body string
		if err := db.QueryRow(`SELECT body FROM bot_outbox WHERE request_id = ? AND type = ?`, bob4.RequestID, store.OutboxRequested).Scan(&body); err != nil {
			t.Fatalf("bob's request for the shared meeting left the outbox: %v", err)
		}
		if want := strings.ReplaceAll(bob4Body, gone, ""); body != want && body != "" {
			t.Errorf("bob's built request: got %s\nwant %s (or rebuilt)", body, want)
		}
		bobLiveAfter := MustLive(t, st, bob)
		if len(bobLiveAfter) != len(bobLiveBefore) {
			t.Fatalf("bob's live meetings: got %+v, want %+v", bobLiveAfter, bobLiveBefore)
		}
		for i, m := range bobLiveBefore {
			if m.UUID == uuidN(4) {
				m.HostID = ""
			}
			if got := bobLiveAfter[i]; got.UUID != m.UUID || got.HostID != m.HostID || got.ID != m.ID || got.Role != m.Role {
				t.Errorf("bob's live meeting %d: got %+v, want %+v", i, got, m)
			}
		}
		if got := mustUser(t, st, bob); got != (store.User{ID: bob, Email: bobUser.Email, Name: bobUser.Name}) {
			t.Errorf("bob: got %+v", got)
		}
		mustSession(t, st, bobSession)
		wantZoomToken(t, st, bob, bobTok)
		items, _, err := st.DueOutbox(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.User != bob {
				t.Errorf("outbox item of %s left: %+v", it.User, it)
			}
		}
	})
}
