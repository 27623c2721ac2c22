package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestWSClientInterop runs the hand-written client against coder/websocket,
// the library onair serves tabs with: masked frames it accepts, messages of
// every length encoding, a ping answered, and a 1012 close handshake.
func TestWSClientInterop(t *testing.T) {
	sizes := []int{0, 125, 126, 65535, 65536, 300_000}
	serverErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			serverErr <- err
			return
		}
		serverErr <- func() error {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			typ, hello, err := c.Read(ctx)
			if err != nil {
				return err
			}
			if typ != websocket.MessageText || string(hello) != `{"type":"hello"}` {
				return fmt.Errorf("hello: %d %q", typ, hello)
			}
			for _, n := range sizes {
				if err := c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte{'x'}, n)); err != nil {
					return err
				}
			}
			// Ping needs a reader for the pong; the client sends nothing else.
			pinged := make(chan error, 1)
			go func() { _, _, err := c.Read(ctx); pinged <- err }()
			if err := c.Ping(ctx); err != nil {
				return err
			}
			// Close waits for the client's close frame; the reader above
			// ends with it.
			return c.Close(websocket.StatusServiceRestart, "server restarting")
		}()
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialWS(ctx, srv.URL, "/ws", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.writeText([]byte(`{"type":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		msg, err := c.read()
		if err != nil {
			t.Fatalf("message of %d bytes: %v", n, err)
		}
		if len(msg) != n || bytes.Count(msg, []byte{'x'}) != n {
			t.Fatalf("message of %d bytes came as %d bytes", n, len(msg))
		}
	}
	_, err = c.read()
	if code := closeCodeOf(err); code != closeServiceRestart {
		t.Fatalf("read after the server's close: %v (code %d), want 1012", err, code)
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// rawWSServer answers the upgrade by hand with accept (nil: the right
// Sec-WebSocket-Accept), then writes frames and reports what the client
// sent back until it closed.
func rawWSServer(t *testing.T, answer func(key string) string, frames []byte) (base string, got chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		c.Write([]byte(answer(req.Header.Get("Sec-WebSocket-Key"))))
		c.Write(frames)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		back, _ := io.ReadAll(br)
		got <- back
	}()
	return "http://" + ln.Addr().String(), got
}

func switching(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
}

// frame is an unmasked server frame.
func frame(first byte, payload string) []byte {
	return append([]byte{first, byte(len(payload))}, payload...)
}

// unmask decodes the client's masked frames.
func unmask(t *testing.T, b []byte) (ops []byte, payloads []string) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 6 || b[1]&0x80 == 0 || b[1]&0x7F > 125 {
			t.Fatalf("not a short masked frame: % x", b)
		}
		n := int(b[1] & 0x7F)
		mask, p := b[2:6], append([]byte(nil), b[6:6+n]...)
		for i := range p {
			p[i] ^= mask[i&3]
		}
		ops, payloads = append(ops, b[0]), append(payloads, string(p))
		b = b[6+n:]
	}
	return ops, payloads
}

// TestWSClientFragments: a message in three frames with a ping between
// them arrives whole, the ping is answered with its payload, and a close
// without a code is echoed.
func TestWSClientFragments(t *testing.T) {
	frames := bytes.Join([][]byte{
		frame(0x01, `{"type":`), frame(0x89, "p1"), frame(0x00, `"meeting`), frame(0x80, `.started"}`),
		frame(0x8A, "unsolicited pong"), frame(0x81, "next"), frame(0x88, ""),
	}, nil)
	base, got := rawWSServer(t, switching, frames)
	c, err := dialWS(context.Background(), base, "/ws", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"type":"meeting.started"}`, "next"} {
		msg, err := c.read()
		if err != nil || string(msg) != want {
			t.Fatalf("read: %q, %v; want %q", msg, err, want)
		}
	}
	if _, err := c.read(); closeCodeOf(err) != 1005 {
		t.Fatalf("a close without a code: %v, want code 1005", err)
	}
	ops, payloads := unmask(t, <-got)
	if !bytes.Equal(ops, []byte{0x8A, 0x88}) || payloads[0] != "p1" || payloads[1] != "" {
		t.Fatalf("client sent ops % x payloads %q; want a pong p1 and an empty close", ops, payloads)
	}
}

// TestWSClientRefuses: what a server must not send ends the connection
// with a clear error (and a 1002 close frame where a frame was wrong).
func TestWSClientRefuses(t *testing.T) {
	long := func(first byte, n uint64) []byte { return binary.BigEndian.AppendUint64([]byte{first, 127}, n) }
	// A first fragment, then a continuation whose length would wrap a sum.
	wrap := append(frame(0x01, "abc"), long(0x80, 1<<63-1)...)
	noUpgrade := func(key string) string {
		return strings.Replace(switching(key), "Upgrade: websocket\r\n", "", 1)
	}
	for _, tc := range []struct {
		name   string
		answer func(string) string
		frames []byte
		want   string
		code   string // the close frame the client sends; "" for 1002
	}{
		{"not upgraded", func(string) string {
			return "HTTP/1.1 403 Forbidden\r\nContent-Length: 26\r\n\r\n{\"error\":\"bad_origin\"}\r\n\r\n"
		}, nil, "403 Forbidden", ""},
		{"wrong accept", func(string) string { return switching("another key") }, nil, "Sec-WebSocket-Accept", ""},
		{"masked frame", switching, []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, "masked", ""},
		{"reserved bit", switching, []byte{0xC1, 0x01, 'x'}, "reserved", ""},
		{"long ping", switching, append([]byte{0x89, 126, 0, 200}, make([]byte, 200)...), "control frame", ""},
		{"fragmented ping", switching, frame(0x09, "p"), "control frame", ""},
		{"continuation first", switching, frame(0x80, "x"), "continuation", ""},
		{"message inside a message", switching, append(frame(0x01, "a"), frame(0x81, "b")...), "continuation", ""},
		{"unknown opcode", switching, frame(0x83, "x"), "opcode 3", ""},
		{"unknown control opcode", switching, frame(0x8B, "x"), "opcode 11", ""},
		{"close with a one-byte body", switching, frame(0x88, "x"), "one-byte", ""},
		{"length with the top bit set", switching, long(0x81, 1<<63), "top bit", ""},
		{"too big", switching, long(0x81, wsMaxMessage+1), "too big", "\x03\xf1"},
		{"too big, in a continuation", switching, wrap, "too big", "\x03\xf1"},
		{"101 without Upgrade", noUpgrade, nil, "Upgrade: websocket", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, got := rawWSServer(t, tc.answer, tc.frames)
			c, err := dialWS(context.Background(), base, "/ws", false)
			if err == nil {
				_, err = c.read()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one about %q", err, tc.want)
			}
			if tc.frames == nil {
				return
			}
			ops, payloads := unmask(t, <-got)
			if code := cmp.Or(tc.code, "\x03\xea"); len(ops) != 1 || ops[0] != 0x88 || payloads[0] != code {
				t.Fatalf("client sent ops % x payloads %q; want one close %q", ops, payloads, code)
			}
		})
	}
	if _, err := dialWS(context.Background(), "https://127.0.0.1:1", "/ws", false); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("https base: %v", err)
	}
}

// TestWSClientCancelled: a server that never answers the upgrade holds the
// client only until its context ends.
func TestWSClientCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = dialWS(ctx, "http://"+ln.Addr().String(), "/ws", false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("dial: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("dial returned after %v", d)
	}
}
