package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"onair/zoom"
)

// poster is one keep-alive connection that posts webhooks as Zoom does,
// HTTP/1.1 written by hand. net/http's client passes every request between
// three goroutines and costs the load tool, on the cores it shares with
// onair, about as much CPU as onair spends handling the webhook.
type poster struct {
	host string
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

// posters keeps idle posters per node.
type posters struct {
	mu   sync.Mutex
	idle map[string][]*poster // by base URL
}

// post sends a signed webhook to base on an idle connection (or a new
// one) and returns the status and how long the exchange took. As net/http's
// client, it tries once more on a new connection when a reused one fails:
// the server may have closed it while idle, or restarted (storm).
func (ps *posters) post(ctx context.Context, base, secret string, body []byte) (int, time.Duration, error) {
	start := time.Now()
	for {
		p, reused, err := ps.get(ctx, base)
		if err != nil {
			return 0, time.Since(start), err
		}
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		p.req = fmt.Appendf(p.req[:0], "POST /webhooks/zoom HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"%s: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
			p.host, zoom.HeaderTimestamp, ts, zoom.HeaderSignature, zoom.Sign([]byte(secret), ts, body), len(body))
		p.req = append(p.req, body...)
		p.conn.SetDeadline(time.Now().Add(10 * time.Second))
		status, err := p.exchange()
		if err != nil {
			p.conn.Close()
			if reused {
				continue
			}
			return 0, time.Since(start), err
		}
		ps.put(base, p)
		return status, time.Since(start), nil
	}
}

func (p *poster) exchange() (int, error) {
	if _, err := p.conn.Write(p.req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = fmt.Errorf("server closed the connection (%s)", resp.Status)
	}
	return resp.StatusCode, err
}

func (ps *posters) get(ctx context.Context, base string) (p *poster, reused bool, err error) {
	ps.mu.Lock()
	if idle := ps.idle[base]; len(idle) > 0 {
		p := idle[len(idle)-1]
		ps.idle[base] = idle[:len(idle)-1]
		ps.mu.Unlock()
		return p, true, nil
	}
	ps.mu.Unlock()
	u, err := url.Parse(base)
	if err != nil {
		return nil, false, err
	}
	if u.Scheme != "http" {
		return nil, false, fmt.Errorf("webhooks go over plain HTTP, not %s", u.Scheme)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, false, err
	}
	return &poster{host: u.Host, conn: conn, br: bufio.NewReader(conn)}, false, nil
}

func (ps *posters) put(base string, p *poster) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.idle == nil {
		ps.idle = map[string][]*poster{}
	}
	ps.idle[base] = append(ps.idle[base], p)
}

// closeIdle closes every idle connection.
func (ps *posters) closeIdle() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for base, idle := range ps.idle {
		for _, p := range idle {
			p.conn.Close()
		}
		delete(ps.idle, base)
	}
}
