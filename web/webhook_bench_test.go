package web

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onair/hub"
	"onair/store"
	"onair/zoom"
)

// benchWebhooks builds signed meeting.started requests from Zoom's example
// delivery, each with its own uuid and event_ts, spread over 1000 hosts.
type benchWebhooks struct {
	secret   []byte
	template []byte
	next     atomic.Int64
}

const benchWebhookHosts = 1000

func (bw *benchWebhooks) request(host int) *http.Request {
	n := bw.next.Add(1)
	body := bytes.Replace(bw.template, []byte(`"4s5Dq2X+Qj2wZ0x7YyVh/g=="`),
		[]byte(`"bEnCh`+strconv.FormatInt(n, 36)+`+Qj2wZ0x7YyVh/g=="`), 1)
	body = bytes.Replace(body, []byte(`"z8yBXksqT6GLlIS9ZfQbbw"`), []byte(`"bench-host-`+strconv.Itoa(host)+`"`), 1)
	body = bytes.Replace(body, []byte(`1764856800123`), strconv.AppendInt(nil, 1764856800123+n, 10), 1)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	r := httptest.NewRequest(http.MethodPost, "/webhooks/zoom", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(zoom.HeaderTimestamp, ts)
	r.Header.Set(zoom.HeaderSignature, zoom.Sign(bw.secret, ts, body))
	return r
}

// requests builds n requests, round-robin over the hosts.
func (bw *benchWebhooks) requests(n int) []*http.Request {
	rs := make([]*http.Request, n)
	for i := range rs {
		rs[i] = bw.request(int(bw.next.Load()) % benchWebhookHosts)
	}
	return rs
}

// benchServe runs r through the handler and fails unless it was accepted.
func benchServe(b *testing.B, s *Server, r *http.Request) {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"accepted"`)) {
		b.Errorf("webhook: %d %s", w.Code, w.Body.Bytes())
	}
}

func BenchmarkWebhookHandler(b *testing.B) {
	template, err := os.ReadFile(filepath.Join(payloadDir, "meeting.started.json"))
	if err != nil {
		b.Fatal(err)
	}
	bw := &benchWebhooks{secret: []byte("bench-webhook-secret"), template: template}
	h := hub.New(hub.Options{})
	st, err := store.Open(context.Background(), store.Options{
		Path: filepath.Join(b.TempDir(), "onair.db"), OnCommit: Publish(h, nil),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	s := New(Config{WebhookSecrets: [][]byte{bw.secret}}, st, h, nil)
	s.SetReady()

	// Every host becomes a known user first, concurrently so the writer
	// batches them: the timed part is steady-state ingest.
	var wg sync.WaitGroup
	for i := range benchWebhookHosts {
		r := bw.request(i)
		wg.Go(func() { benchServe(b, s, r) })
	}
	wg.Wait()

	b.Run("serial", func(b *testing.B) {
		rs := bw.requests(b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for _, r := range rs {
			benchServe(b, s, r)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
	})
	b.Run("parallel", func(b *testing.B) {
		rs := bw.requests(b.N)
		var i atomic.Int64
		b.SetParallelism(32) // 32 × GOMAXPROCS concurrent webhooks: the writer batches them
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				benchServe(b, s, rs[i.Add(1)-1])
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
	})
}
