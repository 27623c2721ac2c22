package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bench is the running target: an onair process of ours, or one at --url.
type bench struct {
	cfg    benchConfig
	log    io.Writer
	base   string // http://host:port
	dir    string // temp folder of a server we started
	cmd    *exec.Cmd
	addr   string
	client *http.Client
}

func newBench(ctx context.Context, c benchConfig, log io.Writer) (*bench, error) {
	b := &bench{cfg: c, log: log, base: strings.TrimSuffix(c.url, "/")}
	b.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        c.concurrency * 2,
			MaxIdleConnsPerHost: c.concurrency * 2,
			IdleConnTimeout:     time.Minute,
		},
	}
	if c.server == "" {
		return b, nil
	}
	dir, err := os.MkdirTemp("", "onair-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	if err := b.start(ctx, "127.0.0.1:0"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// start runs the server on addr and waits until it is ready.
func (b *bench) start(ctx context.Context, addr string) error {
	cmd := exec.Command(b.cfg.server, "serve", "--addr", addr, "--db", filepath.Join(b.dir, "onair.db"),
		"--shutdown-drain", "0s", "--max-tabs-per-user", strconv.Itoa(max(32, b.cfg.tabs/b.cfg.users+1)))
	cmd.Env = append(os.Environ(),
		"ZOOM_WEBHOOK_SECRET_TOKEN="+b.cfg.webhookSecret,
		"ONAIR_TOKEN_SECRET="+b.cfg.tokenSecret,
		"ONAIR_DB_SYNC="+b.cfg.dbSync,
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.cfg.server, err)
	}
	b.cmd = cmd
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "onair listening" {
				listening <- line.Addr
			} else if !strings.Contains(sc.Text(), `"level":"INFO"`) {
				fmt.Fprintf(b.log, "onair: %s\n", sc.Text())
			}
		}
	}()
	select {
	case b.addr = <-listening:
		// A restart listens on the same address while the storm's tabs
		// read b.base to reconnect: write it only when it changes.
		if base := "http://" + b.addr; b.base != base {
			b.base = base
		}
		return nil
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("onair did not start listening")
	case <-ctx.Done():
		cmd.Process.Kill()
		return ctx.Err()
	}
}

// restart stops the server with SIGTERM (tabs get 1012) and starts it again
// on the same address and database.
func (b *bench) restart(ctx context.Context) error {
	if b.cmd == nil {
		return fmt.Errorf("storm with a restart needs --server")
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	return b.start(ctx, b.addr)
}

func (b *bench) close() {
	if b.cmd != nil {
		b.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			b.cmd.Process.Kill()
		}
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

func (b *bench) serverPID() int {
	if b.cmd != nil {
		return b.cmd.Process.Pid
	}
	return b.cfg.pid
}

// rss returns the server's resident set in bytes (0 when unknown).
func (b *bench) rss() int64 {
	pid := b.serverPID()
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpu returns the server's user+system CPU time so far.
func (b *bench) cpu() time.Duration {
	pid := b.serverPID()
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces) start at ") ".
	s := string(data)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// metric reads one series (name{labels} as exposed) from the server's /metrics.
func (b *bench) metric(name string) float64 {
	resp, err := b.client.Get(b.base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
