package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"onair/hub"
	"onair/store"
	"onair/zoom"
)

// resPost posts a signed webhook without touching t, for use in goroutines.
func resPost(e *testEnv, body []byte) error {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/webhooks/zoom", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(zoom.HeaderTimestamp, ts)
	req.Header.Set(zoom.HeaderSignature, zoom.Sign(e.secret, ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook: %d %s", resp.StatusCode, b)
	}
	return nil
}

// resStarts posts n meeting.started for user, uuids prefix-0 … prefix-(n-1).
func resStarts(e *testEnv, user, prefix string, n int) {
	e.t.Helper()
	for i := range n {
		e.mustPost(event{Name: "meeting.started", UUID: fmt.Sprintf("%s-%d", prefix, i), Host: user, Topic: "T"}.body(), http.StatusOK)
	}
}

// resConnect says hello with since and returns the client and its welcome.
func resConnect(e *testEnv, user string, since *store.Position) (*wsClient, frame) {
	e.t.Helper()
	return e.connect(user, since)
}

func TestWSResume(t *testing.T) {
	e := newEnv(t)
	// setup gives a user ten started meetings and returns the log's epoch.
	setup := func(t *testing.T, user string) string {
		t.Helper()
		resStarts(e, user, user, 10)
		_, w := resConnect(e, user, nil)
		if got, want := w.Seq, int64(10); got != want {
			t.Fatalf("seq after 10 starts: got %d, want %d", got, want)
		}
		return w.Epoch
	}

	t.Run("publish 10, resume from 8", func(t *testing.T) {
		user := "res-8"
		epoch := setup(t, user)
		c, w := resConnect(e, user, &store.Position{Epoch: epoch, Seq: 8})
		if !w.Resumed {
			t.Fatalf("resumed: got false, want true: %s", w.Raw)
		}
		if got, want := w.Seq, int64(8); got != want {
			t.Fatalf("welcome seq: got %d, want %d", got, want)
		}
		if got, want := w.Epoch, epoch; got != want {
			t.Fatalf("welcome epoch: got %q, want %q", got, want)
		}
		for i, want := range []int64{9, 10} {
			f := c.read()
			if got := f.Seq; got != want {
				t.Fatalf("replayed frame %d: seq %d, want %d", i, got, want)
			}
			if got, want := f.Type, "meeting.started"; got != want {
				t.Fatalf("replayed frame %d: type %q, want %q", i, got, want)
			}
			if got, want := f.Meeting.UUID, fmt.Sprintf("%s-%d", user, want-1); got != want {
				t.Fatalf("replayed frame %d: uuid %q, want %q", i, got, want)
			}
			if got, want := f.Epoch, epoch; got != want {
				t.Fatalf("replayed frame %d: epoch %q, want %q", i, got, want)
			}
			if !sockTimeRE.MatchString(f.At) {
				t.Fatalf("replayed frame %d: at %q, want RFC 3339 UTC with milliseconds", i, f.At)
			}
		}
		e.mustPost(event{Name: "meeting.ended", UUID: user + "-3", Host: user, Topic: "T"}.body(), http.StatusOK)
		f := c.read()
		if got, want := f.Seq, int64(11); got != want {
			t.Fatalf("live frame after the replay: seq %d, want %d", got, want)
		}
		if got, want := f.Type, "meeting.ended"; got != want {
			t.Fatalf("live frame after the replay: type %q, want %q", got, want)
		}
	})

	t.Run("resume at the newest", func(t *testing.T) {
		user := "res-newest"
		epoch := setup(t, user)
		c, w := resConnect(e, user, &store.Position{Epoch: epoch, Seq: 10})
		if !w.Resumed {
			t.Fatalf("resumed: got false, want true: %s", w.Raw)
		}
		if got, want := w.Seq, int64(10); got != want {
			t.Fatalf("welcome seq: got %d, want %d", got, want)
		}
		e.mustPost(event{Name: "meeting.started", UUID: "res-newest-live", Host: user, Topic: "T"}.body(), http.StatusOK)
		if got, want := c.read().Seq, int64(11); got != want {
			t.Fatalf("first frame: seq %d, want %d", got, want)
		}
	})

	notResumed := func(t *testing.T, user string, since store.Position) {
		t.Helper()
		c, w := resConnect(e, user, &since)
		if w.Resumed {
			t.Fatalf("resumed: got true, want false: %s", w.Raw)
		}
		if got, want := w.Seq, int64(10); got != want {
			t.Fatalf("welcome seq: got %d, want %d (the newest)", got, want)
		}
		if got, want := len(w.Meetings), 10; got != want {
			t.Fatalf("snapshot meetings: got %d, want %d", got, want)
		}
		raw := sockRawFields(t, w.Raw)
		if got, want := string(raw["bots"]), "[]"; got != want {
			t.Fatalf("snapshot bots: got %s, want %s", got, want)
		}
		// Nothing is replayed: the next frame is the next live event.
		e.mustPost(event{Name: "meeting.ended", UUID: user + "-0", Host: user, Topic: "T"}.body(), http.StatusOK)
		f := c.read()
		if got, want := f.Seq, int64(11); got != want {
			t.Fatalf("first frame after the snapshot: seq %d, want %d (%s)", got, want, f.Raw)
		}
	}
	t.Run("another epoch gets a snapshot", func(t *testing.T) {
		user := "res-epoch"
		epoch := setup(t, user)
		notResumed(t, user, store.Position{Epoch: epoch + "x", Seq: 8})
	})
	t.Run("an empty epoch gets a snapshot", func(t *testing.T) {
		user := "res-empty-epoch"
		setup(t, user)
		notResumed(t, user, store.Position{Epoch: "", Seq: 8})
	})
	t.Run("seq beyond the newest gets a snapshot", func(t *testing.T) {
		user := "res-beyond"
		epoch := setup(t, user)
		notResumed(t, user, store.Position{Epoch: epoch, Seq: 11})
	})
	t.Run("negative seq gets a snapshot", func(t *testing.T) {
		user := "res-negative"
		epoch := setup(t, user)
		notResumed(t, user, store.Position{Epoch: epoch, Seq: -1})
	})
	t.Run("another user's epoch gets a snapshot", func(t *testing.T) {
		user, other := "res-mine", "res-theirs"
		setup(t, user)
		otherEpoch := setup(t, other)
		notResumed(t, user, store.Position{Epoch: otherEpoch, Seq: 8})
	})
	t.Run("history swept by retention gets a snapshot", func(t *testing.T) {
		user := "res-swept"
		epoch := setup(t, user)
		if _, err := e.store.Sweep(context.Background(), store.Retention{Age: 24 * time.Hour, Events: 3}); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		notResumed(t, user, store.Position{Epoch: epoch, Seq: 5})
		// The retained tail (8, 9, 10 and the end just posted, 11) still resumes.
		c, w := resConnect(e, user, &store.Position{Epoch: epoch, Seq: 8})
		if !w.Resumed {
			t.Fatalf("resume within the retained log: got a snapshot: %s", w.Raw)
		}
		for _, want := range []int64{9, 10, 11} {
			if got := c.read().Seq; got != want {
				t.Fatalf("replayed seq %d, want %d", got, want)
			}
		}
	})
}

func TestWSResumeMaxReplay(t *testing.T) {
	e := newEnv(t, func(c *Config, h *hub.Options) { c.MaxReplay = 5 })
	user := "res-max"
	resStarts(e, user, user, 10)
	_, w := resConnect(e, user, nil)
	epoch := w.Epoch

	t.Run("more missed than MaxReplay gets a snapshot", func(t *testing.T) {
		_, w := resConnect(e, user, &store.Position{Epoch: epoch, Seq: 4})
		if w.Resumed {
			t.Fatalf("resumed: got true, want false: %s", w.Raw)
		}
		if got, want := w.Seq, int64(10); got != want {
			t.Fatalf("welcome seq: got %d, want %d", got, want)
		}
		if got, want := len(w.Meetings), 10; got != want {
			t.Fatalf("snapshot meetings: got %d, want %d", got, want)
		}
	})
	t.Run("exactly MaxReplay missed resumes", func(t *testing.T) {
		c, w := resConnect(e, user, &store.Position{Epoch: epoch, Seq: 5})
		if !w.Resumed {
			t.Fatalf("resumed: got false, want true: %s", w.Raw)
		}
		for want := int64(6); want <= 10; want++ {
			if got := c.read().Seq; got != want {
				t.Fatalf("replayed seq %d, want %d", got, want)
			}
		}
	})
}

// TestWSResumeRace connects while webhooks are being committed, many times:
// the welcome's position and the live frames after it must fit exactly,
// with every seq once and the snapshot plus the frames ending in the state
// the store holds.
func TestWSResumeRace(t *testing.T) {
	e := newEnv(t)
	const (
		iterations = 30
		posters    = 2
		perPoster  = 3 // meetings per poster, each started then ended
		before     = 2 // meetings started before the race
	)
	for i := range iterations {
		withSince := i%2 == 0
		name := fmt.Sprintf("%d snapshot", i)
		if withSince {
			name = fmt.Sprintf("%d since", i)
		}
		t.Run(name, func(t *testing.T) {
			user := fmt.Sprintf("race-%d", i)
			resStarts(e, user, user+"-pre", before)
			pre, w0 := resConnect(e, user, nil)
			pre.conn.CloseNow()
			if got, want := w0.Seq, int64(before); got != want {
				t.Fatalf("seq before the race: got %d, want %d", got, want)
			}
			last := int64(before + posters*perPoster*2)

			var wg sync.WaitGroup
			errs := make(chan error, posters*perPoster*2)
			start := make(chan struct{})
			for p := range posters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for m := range perPoster {
						uuid := fmt.Sprintf("%s-p%d-m%d", user, p, m)
						errs <- resPost(e, event{Name: "meeting.started", UUID: uuid, Host: user, Topic: "T"}.body())
						errs <- resPost(e, event{Name: "meeting.ended", UUID: uuid, Host: user, Topic: "T"}.body())
					}
				}()
			}
			close(start)
			// Vary where in the stream of commits the hello lands.
			time.Sleep(time.Duration(i%6) * 700 * time.Microsecond)
			var since *store.Position
			if withSince {
				since = &store.Position{Epoch: w0.Epoch, Seq: w0.Seq}
			}
			c, w := resConnect(e, user, since)
			if withSince {
				if !w.Resumed {
					t.Fatalf("resumed: got false, want true: %s", w.Raw)
				}
				if got, want := w.Seq, w0.Seq; got != want {
					t.Fatalf("welcome seq: got %d, want %d", got, want)
				}
			} else if w.Resumed {
				t.Fatalf("resumed without since: %s", w.Raw)
			}
			live := map[string]bool{}
			if withSince {
				for _, m := range w0.Meetings {
					live[m.UUID] = true
				}
			} else {
				for _, m := range w.Meetings {
					live[m.UUID] = true
				}
			}
			for next := w.Seq + 1; next <= last; next++ {
				f := c.read()
				if got, want := f.Seq, next; got != want {
					t.Fatalf("after welcome seq %d: got seq %d, want %d (%s)", w.Seq, got, want, f.Raw)
				}
				switch f.Type {
				case "meeting.started":
					if live[f.Meeting.UUID] {
						t.Fatalf("seq %d starts %s, already live in the snapshot", f.Seq, f.Meeting.UUID)
					}
					live[f.Meeting.UUID] = true
				case "meeting.ended":
					if !live[f.Meeting.UUID] {
						t.Fatalf("seq %d ends %s, not live in the snapshot", f.Seq, f.Meeting.UUID)
					}
					delete(live, f.Meeting.UUID)
				default:
					t.Fatalf("unexpected frame %s", f.Raw)
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			want, err := e.store.LiveMeetings(context.Background(), user)
			if err != nil {
				t.Fatal(err)
			}
			var wantUUIDs, gotUUIDs []string
			for _, m := range want {
				wantUUIDs = append(wantUUIDs, m.UUID)
			}
			for u := range live {
				gotUUIDs = append(gotUUIDs, u)
			}
			slices.Sort(wantUUIDs)
			slices.Sort(gotUUIDs)
			if !slices.Equal(gotUUIDs, wantUUIDs) {
				t.Fatalf("live meetings from welcome and frames: got %v, want %v", gotUUIDs, wantUUIDs)
			}
			// Nothing more arrives: a marker is the very next frame.
			e.mustPost(event{Name: "meeting.started", UUID: user + "-marker", Host: user, Topic: "T"}.body(), http.StatusOK)
			f := c.read()
			if got, want := f.Seq, last+1; got != want || f.Meeting.UUID != user+"-marker" {
				t.Fatalf("after the race: got %s, want the marker at seq %d", f.Raw, want)
			}
			c.conn.CloseNow()
		})
	}
}
