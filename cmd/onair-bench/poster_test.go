package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeOnair accepts connections on loopback and answers each request with
// what answer returns for the n-th request (from 1), written raw; an empty
// answer closes the connection without a byte, and one that starts with
// "!" closes it after the rest.
func fakeOnair(t *testing.T, answer func(n int64) string) (base string, requests *atomic.Int64, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	requests, conns = new(atomic.Int64), new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Body.Close()
					a := answer(requests.Add(1))
					if a == "" {
						return
					}
					if rest, cut := strings.CutPrefix(a, "!"); cut {
						c.Write([]byte(rest))
						return
					}
					c.Write([]byte(a))
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), requests, conns
}

const (
	ok200     = "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n{\"outcome\":\"accepted\"}\r\n"
	close200  = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
	truncated = "!HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"out"
)

func TestPoster(t *testing.T) {
	ctx := context.Background()
	post := func(ps *posters, base string) (int, error) {
		status, _, err := ps.post(ctx, base, "secret", []byte(`{"event":"x"}`))
		return status, err
	}

	for _, c := range []struct {
		name            string
		answer          func(n int64) string
		posts           int
		requests, conns int64
	}{
		{"keep-alive", func(int64) string { return ok200 }, 3, 3, 1},
		{"Connection: close counts, and is not reused", func(int64) string { return close200 }, 2, 2, 2},
		// The second request finds its connection closed (a restart).
		{"a reused connection closed unanswered is tried once more", func(n int64) string {
			if n == 2 {
				return ""
			}
			return ok200
		}, 2, 3, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, reqs, conns := fakeOnair(t, c.answer)
			var ps posters
			defer ps.closeIdle()
			for range c.posts {
				if status, err := post(&ps, base); status != 200 || err != nil {
					t.Fatalf("post: %d, %v; want 200", status, err)
				}
			}
			if reqs.Load() != c.requests || conns.Load() != c.conns {
				t.Fatalf("%d requests over %d connections, want %d over %d", reqs.Load(), conns.Load(), c.requests, c.conns)
			}
		})
	}

	t.Run("a cut answer is an error, not sent again", func(t *testing.T) {
		base, reqs, _ := fakeOnair(t, func(n int64) string {
			if n == 2 {
				return truncated
			}
			return ok200
		})
		var ps posters
		defer ps.closeIdle()
		if _, err := post(&ps, base); err != nil {
			t.Fatal(err)
		}
		if _, err := post(&ps, base); err == nil {
			t.Fatal("a cut answer: got no error")
		}
		if reqs.Load() != 2 {
			t.Fatalf("%d requests, want 2 (no retry after an answer began)", reqs.Load())
		}
	})

	t.Run("a first connection closed unanswered is an error", func(t *testing.T) {
		base, reqs, _ := fakeOnair(t, func(int64) string { return "" })
		var ps posters
		defer ps.closeIdle()
		if _, err := post(&ps, base); err == nil || !strings.Contains(err.Error(), "EOF") {
			t.Fatalf("got %v, want EOF", err)
		}
		if reqs.Load() != 1 {
			t.Fatalf("%d requests, want 1", reqs.Load())
		}
	})
}
