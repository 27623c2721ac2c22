package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// wsConn is a tab's WebSocket, RFC 6455 written by hand as poster is for
// webhooks. coder/websocket's client dials through net/http's Transport,
// two goroutines per dial, and its reader costs the load tool, on the cores
// it shares with onair, a good part of what onair spends: in a storm of
// 15,000 reconnects that was the limit. The wire is what a browser sends:
// masked frames, no extensions.
type wsConn struct {
	conn net.Conn
	br   *bufio.Reader
	buf  []byte // the message being read; reused
	wbuf []byte // the frame being written; reused
}

// wsMaxMessage bounds a message the server sends: the welcome's snapshot
// is the largest.
const wsMaxMessage = 1 << 20

// closeServiceRestart is the close code of a server that is restarting.
const closeServiceRestart = 1012

// wsCloseError is a close frame the server sent.
type wsCloseError struct {
	code   int
	reason string
}

func (e *wsCloseError) Error() string {
	return fmt.Sprintf("websocket closed: %d %s", e.code, e.reason)
}

// closeCodeOf is the code of the server's close frame that ended a
// connection, or -1 when it ended otherwise.
func closeCodeOf(err error) int {
	if ce, ok := errors.AsType[*wsCloseError](err); ok {
		return ce.code
	}
	return -1
}

// dialWS opens a WebSocket to base (http://host:port) + path. With
// tinyWindow the socket gets a 4 KiB receive buffer.
func dialWS(ctx context.Context, base, path string, tinyWindow bool) (*wsConn, error) {
	var d net.Dialer
	if tinyWindow {
		d.Control = func(network, address string, c syscall.RawConn) error {
			var err error
			c.Control(func(fd uintptr) {
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return err
		}
	}
	conn, host, err := dialPlain(ctx, &d, base, "tabs")
	if err != nil {
		return nil, err
	}
	c := &wsConn{conn: conn, br: bufio.NewReaderSize(conn, 512)}
	done := c.within(ctx)
	err = c.handshake(host, path)
	if err = cmp.Or(done(), err); err != nil { // a timeout after ctx ended is ctx's
		conn.Close()
		return nil, err
	}
	return c, nil
}

// within bounds the connection's reads and writes by ctx: its deadline, or
// its end. done lifts the bound, and reports ctx's error if it ended
// meanwhile.
func (c *wsConn) within(ctx context.Context) (done func() error) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	return func() error {
		if !stop() {
			return ctx.Err()
		}
		c.conn.SetDeadline(time.Time{})
		return nil
	}
}

// wsGUID is RFC 6455's constant for the Sec-WebSocket-Accept answer.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func (c *wsConn) handshake(host, path string) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c.conn, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return fmt.Errorf("websocket handshake: %s: %s", resp.Status, body)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !hasToken(resp.Header.Values("Connection"), "upgrade") {
		return errors.New("websocket handshake: a 101 without Upgrade: websocket and Connection: Upgrade")
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("websocket handshake: wrong Sec-WebSocket-Accept")
	}
	return nil
}

// hasToken says whether a comma-separated header holds token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Opcodes (RFC 6455, 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// writeFrame writes one final, masked frame. Only one goroutine writes at a
// time: the tab before its reader starts, then the reader (pongs, closes).
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	b := append(c.wbuf[:0], 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= mask[i&3]
	}
	c.wbuf = b
	_, err := c.conn.Write(b)
	return err
}

// writeText sends one text message.
func (c *wsConn) writeText(msg []byte) error { return c.writeFrame(opText, msg) }

// read returns the next text or binary message, valid until the next read.
// It answers pings, and a close frame with the same code, as a browser does.
func (c *wsConn) read() ([]byte, error) {
	msg := c.buf[:0]
	started := false
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0F
		if h[0]&0x70 != 0 || h[1]&0x80 != 0 {
			return nil, c.fail("reserved bits or a masked frame from the server")
		}
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var l [2]byte
			if _, err := io.ReadFull(c.br, l[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			if _, err := io.ReadFull(c.br, l[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(l[:])
			if n>>63 != 0 {
				return nil, c.fail("a length with its top bit set")
			}
		}
		if op >= opClose { // control frames are short and never fragmented
			if n > 125 || !fin {
				return nil, c.fail("control frame too long or fragmented")
			}
			if op > opPong {
				return nil, c.fail(fmt.Sprintf("unknown opcode %d", op))
			}
			var p [125]byte
			if _, err := io.ReadFull(c.br, p[:n]); err != nil {
				return nil, err
			}
			if err := c.control(op, p[:n]); err != nil {
				return nil, err
			}
			continue
		}
		if (op == opContinuation) != started {
			return nil, c.fail("a continuation frame without a message, or a message inside another")
		}
		if op != opContinuation && op != opText && op != opBinary {
			return nil, c.fail(fmt.Sprintf("unknown opcode %d", op))
		}
		if n > wsMaxMessage-uint64(len(msg)) {
			return nil, c.failWith(closeMessageTooBig, "message too big")
		}
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return nil, err
		}
		started = true
		if fin {
			c.buf = msg
			return msg, nil
		}
	}
}

// control answers a ping with a pong, and a close with a close and the end
// of the connection.
func (c *wsConn) control(op byte, payload []byte) error {
	switch op {
	case opPing:
		return c.writeFrame(opPong, payload)
	case opClose:
		if len(payload) == 1 {
			return c.fail("a close frame with a one-byte body")
		}
		ce := &wsCloseError{code: 1005} // no status code
		if len(payload) >= 2 {
			ce.code = int(binary.BigEndian.Uint16(payload))
			ce.reason = string(payload[2:])
			payload = payload[:2]
		}
		c.writeFrame(opClose, payload)
		c.conn.Close()
		return ce
	}
	return nil // an unsolicited pong
}

// Close codes the client sends (RFC 6455, 7.4.1).
const (
	closeProtocolError = 1002
	closeMessageTooBig = 1009
)

// fail closes the connection after a protocol error.
func (c *wsConn) fail(why string) error { return c.failWith(closeProtocolError, why) }

func (c *wsConn) failWith(code uint16, why string) error {
	c.writeFrame(opClose, binary.BigEndian.AppendUint16(nil, code))
	c.conn.Close()
	return errors.New("websocket protocol error: " + why)
}

// closeNow closes the connection without a close handshake.
func (c *wsConn) closeNow() error { return c.conn.Close() }
