package web

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client may send its hello right behind the handshake, before the 101
// arrives: those bytes sit in net/http's buffer at hijack time and must
// reach the WebSocket reader first.
func TestHelloPipelinedWithHandshake(t *testing.T) {
	e := newEnv(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	hello, _ := json.Marshal(map[string]string{"type": "hello", "token": e.token("u1")})
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), maskedTextFrame(hello)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.StatusCode, http.StatusSwitchingProtocols; got != want {
		t.Fatalf("handshake: got %d, want %d", got, want)
	}
	var f frame
	if err := json.Unmarshal(readServerFrame(t, br), &f); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Type, "welcome"; got != want {
		t.Fatalf("first frame: got %q, want %q", got, want)
	}
}

// maskedTextFrame encodes a client text frame (payload under 126 bytes
// or under 64 KiB) with a zero mask, which leaves the payload as is.
func maskedTextFrame(p []byte) []byte {
	b := []byte{0x81}
	if len(p) < 126 {
		b = append(b, 0x80|byte(len(p)))
	} else {
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	return append(append(b, 0, 0, 0, 0), p...)
}

// readServerFrame reads one unmasked, unfragmented server frame's payload.
func readServerFrame(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(ext[0])<<8 | int(ext[1])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	return p
}
