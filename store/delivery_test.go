package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"onair/store"
)

func TestDedup(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		t.Run("Redelivery", func(t *testing.T) {
			var rec recorder
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			d := started("host-1", uuidN(1), t0)
			MustAccept(t, st, d)
			d.Received = t0.Add(5 * time.Minute) // Zoom's retry arrives later
			if got, want := MustIngest(t, st, d), store.OutcomeDuplicate; got != want {
				t.Fatalf("redelivery: got %q, want %q", got, want)
			}
			wantTypes(t, "host", rec.EntriesOf("host-1"), "meeting.started")
		})

		t.Run("WithoutEventTime", func(t *testing.T) {
			// An event without event_ts takes its time from its arrival,
			// which differs in each retry: the key must not.
			st := open(t, store.Options{})
			d := other("meeting.sharing_started", t0)
			d.KeyTime = time.Time{}
			MustIngest(t, st, d)
			d.At, d.Received = t0.Add(time.Hour), t0.Add(time.Hour)
			if got, want := MustIngest(t, st, d), store.OutcomeDuplicate; got != want {
				t.Fatalf("redelivery: got %q, want %q", got, want)
			}
		})

		t.Run("SameKeyOtherTime", func(t *testing.T) {
			// The time orders the keys; the keyed hash alone tells them apart.
			st := open(t, store.Options{})
			d := other("meeting.sharing_started", t0)
			MustIngest(t, st, d)
			d.Key = []string{"meeting.sharing_started", "another"}
			if got, want := MustIngest(t, st, d), store.OutcomeIgnored; got != want {
				t.Fatalf("another delivery at the same time: got %q, want %q", got, want)
			}
		})

		t.Run("EveryKind", func(t *testing.T) {
			var rec recorder
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			MustAdmit(t, st, "guest")
			for _, d := range []store.Delivery{
				started("host-1", uuidN(1), t0),
				joined("host-1", uuidN(1), "guest", t0.Add(time.Minute)),
				left("host-1", uuidN(1), "guest", t0.Add(2*time.Minute)),
				ended("host-1", uuidN(1), t0.Add(3*time.Minute)),
				other("meeting.sharing_started", t0),
				deauthorized("someone-else", t0),
			} {
				MustIngest(t, st, d)
				n := len(rec.Entries())
				if got, want := MustIngest(t, st, d), store.OutcomeDuplicate; got != want {
					t.Fatalf("redelivery of %s: got %q, want %q", d.Event, got, want)
				}
				if got, want := len(rec.Entries()), n; got != want {
					t.Fatalf("redelivery of %s: got %d entries, want %d", d.Event, got, want)
				}
			}
		})

		t.Run("Concurrent", func(t *testing.T) {
			var rec recorder
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			d := started("host-1", uuidN(1), t0)
			outcomes := make(chan store.Outcome, 50)
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					out, err := st.Ingest(context.Background(), d)
					if err != nil {
						t.Errorf("ingest: %v", err)
					}
					outcomes <- out
				})
			}
			wg.Wait()
			close(outcomes)
			count := map[store.Outcome]int{}
			for out := range outcomes {
				count[out]++
			}
			if got, want := count[store.OutcomeAccepted], 1; got != want {
				t.Fatalf("accepted: got %d, want %d (all: %v)", got, want, count)
			}
			if got, want := count[store.OutcomeDuplicate], 49; got != want {
				t.Fatalf("duplicates: got %d, want %d (all: %v)", got, want, count)
			}
			wantTypes(t, "host", rec.EntriesOf("host-1"), "meeting.started")
		})
	})
}

func TestMeetingState(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		const host, guest, guest2 = "host-1", "guest-1", "guest-2"
		uuid := uuidN(1)
		setup := func(t *testing.T) (*store.Store, *recorder) {
			rec := &recorder{}
			st := open(t, store.Options{OnCommit: rec.OnCommit})
			return st, rec
		}

		t.Run("StartIsLiveForHost", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, started(host, uuid, t0))
			entries := rec.EntriesOf(host)
			wantTypes(t, "host", entries, "meeting.started")
			e := entries[0]
			if got, want := e.Seq, int64(1); got != want {
				t.Fatalf("seq: got %d, want %d", got, want)
			}
			if got, want := e.Epoch, MustWelcome(t, st, host, nil, 100).Epoch; got != want {
				t.Fatalf("entry epoch: got %q, want the welcome's %q", got, want)
			}
			if got, want := e.At, t0; !got.Equal(want) {
				t.Fatalf("entry at: got %v, want %v", got, want)
			}
			m := meetingOf(t, e)
			if m.UUID != uuid || m.HostID != host || m.Role != store.RoleHost || !m.Live || m.Topic != "Standup "+uuid {
				t.Fatalf("started meeting: got %+v, want %s live for host %s", m, uuid, host)
			}
			live := MustLive(t, st, host)
			if got, want := len(live), 1; got != want {
				t.Fatalf("live meetings: got %d, want %d", got, want)
			}
			if got, want := live[0], m; got.UUID != want.UUID || got.Role != want.Role || !got.StartTime.Equal(want.StartTime.Time) {
				t.Fatalf("live meeting: got %+v, want %+v", got, want)
			}
		})

		t.Run("EndTellsEveryoneIn", func(t *testing.T) {
			st, rec := setup(t)
			MustAdmit(t, st, guest)
			MustAdmit(t, st, guest2)
			MustAccept(t, st, started(host, uuid, t0))
			MustAccept(t, st, joined(host, uuid, guest, t0.Add(1*time.Minute)))
			MustAccept(t, st, joined(host, uuid, guest2, t0.Add(2*time.Minute)))
			MustAccept(t, st, left(host, uuid, guest2, t0.Add(3*time.Minute)))
			MustAccept(t, st, ended(host, uuid, t0.Add(4*time.Minute)))
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started", "meeting.ended")
			wantTypes(t, "guest", rec.EntriesOf(guest), "meeting.joined", "meeting.ended")
			wantTypes(t, "guest who left", rec.EntriesOf(guest2), "meeting.joined", "meeting.left")
			for _, user := range []string{host, guest, guest2} {
				if got := liveUUIDs(t, st, user); len(got) != 0 {
					t.Fatalf("live meetings of %s after the end: got %q, want none", user, got)
				}
			}
			m := meetingOf(t, rec.EntriesOf(guest)[1])
			if m.Live || m.EndTime == nil || !m.EndTime.Equal(t0.Add(4*time.Minute)) || m.Role != store.RoleParticipant {
				t.Fatalf("ended meeting as the guest sees it: got %+v", m)
			}
		})

		t.Run("EndIsFinal", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, started(host, uuid, t0))
			MustAccept(t, st, ended(host, uuid, t0.Add(time.Hour)))
			late := started(host, uuid, t0.Add(2*time.Hour)) // a late retry with another event_ts
			MustIngest(t, st, late)
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started", "meeting.ended")
			if got := liveUUIDs(t, st, host); len(got) != 0 {
				t.Fatalf("live after a late start: got %q, want none", got)
			}
		})

		t.Run("EndBeforeStart", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, ended(host, uuid, t0.Add(time.Hour)))
			MustIngest(t, st, started(host, uuid, t0))
			if got := rec.Entries(); len(got) != 0 {
				t.Fatalf("entries: got %q, want none", types(got))
			}
			if got := liveUUIDs(t, st, host); len(got) != 0 {
				t.Fatalf("live: got %q, want none", got)
			}
		})

		t.Run("HostJoinStartsMeeting", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, joined(host, uuid, host, t0))
			MustIngest(t, st, joined(host, uuid, host, t0.Add(time.Minute))) // rejoin
			MustIngest(t, st, started(host, uuid, t0.Add(2*time.Minute)))    // the start arrives late after all
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started")
			live := MustLive(t, st, host)
			if got, want := len(live), 1; got != want {
				t.Fatalf("live meetings: got %d, want %d", got, want)
			}
			if got, want := live[0].Role, store.RoleHost; got != want {
				t.Fatalf("role: got %q, want %q", got, want)
			}
			if got, want := live[0].Topic, "Standup "+uuid; got != want {
				t.Fatalf("topic from the late start: got %q, want %q", got, want)
			}
		})

		t.Run("HostJoinWhileLive", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, started(host, uuid, t0))
			MustIngest(t, st, joined(host, uuid, host, t0.Add(time.Minute)))
			MustIngest(t, st, left(host, uuid, host, t0.Add(2*time.Minute)))
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started")
			if got, want := liveUUIDs(t, st, host), []string{uuid}; !slices.Equal(got, want) {
				t.Fatalf("live after the host's own leave: got %q, want %q", got, want)
			}
		})

		t.Run("KnownParticipantJoins", func(t *testing.T) {
			st, rec := setup(t)
			MustAdmit(t, st, guest)
			MustAccept(t, st, started(host, uuid, t0))
			MustAccept(t, st, joined(host, uuid, guest, t0.Add(time.Minute)))
			entries := rec.EntriesOf(guest)
			wantTypes(t, "guest", entries, "meeting.joined")
			if got, want := entries[0].Seq, int64(1); got != want {
				t.Fatalf("guest's seq: got %d, want %d", got, want)
			}
			if got, want := meetingOf(t, entries[0]).Role, store.RoleParticipant; got != want {
				t.Fatalf("role in frame: got %q, want %q", got, want)
			}
			live := MustLive(t, st, guest)
			if len(live) != 1 || live[0].UUID != uuid || live[0].Role != store.RoleParticipant || live[0].HostID != host {
				t.Fatalf("guest's live meetings: got %+v, want %s as participant", live, uuid)
			}
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started")
		})

		t.Run("JoinWithoutStart", func(t *testing.T) {
			st, rec := setup(t)
			MustAdmit(t, st, guest)
			MustAccept(t, st, joined(host, uuid, guest, t0))
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started")
			wantTypes(t, "guest", rec.EntriesOf(guest), "meeting.joined")
		})

		t.Run("UnknownParticipantIgnored", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, started(host, uuid, t0))
			MustIngest(t, st, joined(host, uuid, "stranger", t0.Add(time.Minute)))
			MustIngest(t, st, joined(host, uuid, "", t0.Add(time.Minute))) // not signed in to Zoom
			if got := rec.EntriesOf("stranger"); len(got) != 0 {
				t.Fatalf("stranger's entries: got %q, want none", types(got))
			}
			wantUnknown(t, st, "stranger")
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started")
		})

		t.Run("ParticipantLeft", func(t *testing.T) {
			st, rec := setup(t)
			MustAdmit(t, st, guest)
			MustAccept(t, st, started(host, uuid, t0))
			MustAccept(t, st, joined(host, uuid, guest, t0.Add(time.Minute)))
			MustAccept(t, st, left(host, uuid, guest, t0.Add(2*time.Minute)))
			wantTypes(t, "guest", rec.EntriesOf(guest), "meeting.joined", "meeting.left")
			if got := liveUUIDs(t, st, guest); len(got) != 0 {
				t.Fatalf("guest's live meetings: got %q, want none", got)
			}
			if got, want := liveUUIDs(t, st, host), []string{uuid}; !slices.Equal(got, want) {
				t.Fatalf("host's live meetings: got %q, want %q", got, want)
			}
		})

		t.Run("OlderLeaveIgnored", func(t *testing.T) {
			st, rec := setup(t)
			MustAdmit(t, st, guest)
			MustAccept(t, st, started(host, uuid, t0))
			// Left at 10:01, rejoined at 10:02; the leave arrives last.
			MustAccept(t, st, joined(host, uuid, guest, t0.Add(2*time.Minute)))
			MustIngest(t, st, left(host, uuid, guest, t0.Add(1*time.Minute)))
			wantTypes(t, "guest", rec.EntriesOf(guest), "meeting.joined")
			if got, want := liveUUIDs(t, st, guest), []string{uuid}; !slices.Equal(got, want) {
				t.Fatalf("guest's live meetings: got %q, want %q", got, want)
			}
		})

		t.Run("OlderJoinIgnored", func(t *testing.T) {
			st, rec := setup(t)
			MustAdmit(t, st, guest)
			MustAccept(t, st, started(host, uuid, t0))
			MustIngest(t, st, left(host, uuid, guest, t0.Add(2*time.Minute)))
			MustIngest(t, st, joined(host, uuid, guest, t0.Add(1*time.Minute)))
			if got := rec.EntriesOf(guest); len(got) != 0 {
				t.Fatalf("guest's entries: got %q, want none", types(got))
			}
			if got := liveUUIDs(t, st, guest); len(got) != 0 {
				t.Fatalf("guest's live meetings: got %q, want none", got)
			}
		})

		t.Run("MissingFieldsIgnored", func(t *testing.T) {
			st, rec := setup(t)
			noUUID := started(host, "", t0)
			noHost := started("", uuid, t0)
			joinNoHost := joined("", uuid, guest, t0)
			endNoUUID := ended(host, "", t0)
			leaveNoUUID := left(host, "", guest, t0)
			deauthNoUser := deauthorized("", t0)
			for name, d := range map[string]store.Delivery{
				"StartWithoutUUID": noUUID, "StartWithoutHost": noHost, "JoinWithoutHost": joinNoHost,
				"EndWithoutUUID": endNoUUID, "LeaveWithoutUUID": leaveNoUUID, "DeauthWithoutUser": deauthNoUser,
				"Unknown": other("meeting.sharing_started", t0),
			} {
				if got, want := MustIngest(t, st, d), store.OutcomeIgnored; got != want {
					t.Fatalf("%s: got %q, want %q", name, got, want)
				}
				if got, want := MustIngest(t, st, d), store.OutcomeDuplicate; got != want {
					t.Fatalf("%s again: got %q, want %q", name, got, want)
				}
			}
			if got := rec.Entries(); len(got) != 0 {
				t.Fatalf("entries: got %q, want none", types(got))
			}
			wantUnknown(t, st, host)
		})

		t.Run("TwoLiveMeetingsForOneHost", func(t *testing.T) {
			st, rec := setup(t)
			MustAccept(t, st, started(host, uuidN(1), t0))
			MustAccept(t, st, started(host, uuidN(2), t0.Add(5*time.Minute)))
			wantTypes(t, "host", rec.EntriesOf(host), "meeting.started", "meeting.started")
			if got, want := liveUUIDs(t, st, host), []string{uuidN(2), uuidN(1)}; !slices.Equal(got, want) {
				t.Fatalf("live meetings, newest first: got %q, want %q", got, want)
			}
			n, err := st.CountLive(context.Background())
			if err != nil {
				t.Fatalf("count live: %v", err)
			}
			if got, want := n, 2; got != want {
				t.Fatalf("count live: got %d, want %d", got, want)
			}
		})
	})
}

// TestOrderIndependence delivers one meeting's webhooks in every order, with
// a redelivery among them, and expects the state of the in-order sequence.
func TestOrderIndependence(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		st := open(t, store.Options{})
		type step func(host, uuid, guest string) store.Delivery
		steps := []step{
			func(h, u, g string) store.Delivery { return started(h, u, t0) },
			func(h, u, g string) store.Delivery { return joined(h, u, g, t0.Add(1*time.Minute)) },
			func(h, u, g string) store.Delivery { return left(h, u, g, t0.Add(2*time.Minute)) },
			func(h, u, g string) store.Delivery { return joined(h, u, g, t0.Add(3*time.Minute)) },
		}
		orders := permutations(len(steps))
		for i, order := range orders {
			host, guest, uuid := fmt.Sprintf("host-%d", i), fmt.Sprintf("guest-%d", i), uuidN(i)
			MustAdmit(t, st, guest)
			for _, k := range order {
				MustIngest(t, st, steps[k](host, uuid, guest))
			}
			MustIngest(t, st, steps[order[0]](host, uuid, guest)) // a redelivery
			hostLive, guestLive := MustLive(t, st, host), MustLive(t, st, guest)
			if len(hostLive) != 1 || len(guestLive) != 1 {
				t.Fatalf("order %v: got host %+v, guest %+v; want one live meeting each", order, hostLive, guestLive)
			}
			h, g := hostLive[0], guestLive[0]
			if h.UUID != uuid || h.Role != store.RoleHost || h.Topic != "Standup "+uuid || !h.StartTime.Equal(t0) {
				t.Fatalf("order %v: host sees %+v", order, h)
			}
			if g.UUID != uuid || g.Role != store.RoleParticipant || g.Topic != h.Topic || !g.StartTime.Equal(t0) {
				t.Fatalf("order %v: guest sees %+v", order, g)
			}
		}
		// And the end, wherever it falls, is final for everyone.
		for i, order := range orders {
			host, guest, uuid := fmt.Sprintf("end-host-%d", i), fmt.Sprintf("end-guest-%d", i), uuidN(100+i)
			MustAdmit(t, st, guest)
			end := ended(host, uuid, t0.Add(time.Hour))
			for j, k := range order {
				if j == order[0] {
					MustIngest(t, st, end)
				}
				MustIngest(t, st, steps[k](host, uuid, guest))
			}
			if h, g := liveUUIDs(t, st, host), liveUUIDs(t, st, guest); len(h)+len(g) != 0 {
				t.Fatalf("order %v, end at %d: got host %q, guest %q live; want none", order, order[0], h, g)
			}
		}
	})
}

// permutations returns every order of 0…n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var all [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			all = append(all, q)
		}
	}
	return all
}
