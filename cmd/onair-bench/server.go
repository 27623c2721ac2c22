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
	"sync/atomic"
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
	// posters send the webhooks (the client does the rest).
	posters posters
	// others are the nodes after the first (--nodes), at bases[1:].
	others []*exec.Cmd
	bases  []string
	rr     atomic.Uint64 // round-robin over the nodes for webhooks
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
	b.bases = []string{b.base}
	for range c.nodes - 1 {
		cmd, addr, err := b.launch(ctx, "127.0.0.1:0")
		if err != nil {
			b.close()
			return nil, err
		}
		b.others = append(b.others, cmd)
		b.bases = append(b.bases, "http://"+addr)
	}
	return b, nil
}

// webhookBase is where the next webhook goes: round-robin over the nodes.
func (b *bench) webhookBase() string {
	if len(b.bases) < 2 {
		return b.base
	}
	return b.bases[b.rr.Add(1)%uint64(len(b.bases))]
}

// tabBase is the node the i-th tab connects to.
func (b *bench) tabBase(i int) string {
	if len(b.bases) < 2 || i%len(b.bases) == 0 {
		return b.base // the first node's address can change on restart
	}
	return b.bases[i%len(b.bases)]
}

// start runs the (first) server on addr and waits until it is ready.
func (b *bench) start(ctx context.Context, addr string) error {
	cmd, bound, err := b.launch(ctx, addr)
	if err != nil {
		return err
	}
	b.cmd, b.addr = cmd, bound
	// A restart listens on the same address while the storm's tabs read
	// b.base to reconnect: write it only when it changes.
	if base := "http://" + b.addr; b.base != base {
		b.base = base
	}
	return nil
}

// launch runs a server on addr and returns it once it listens.
func (b *bench) launch(ctx context.Context, addr string) (*exec.Cmd, string, error) {
	db := []string{"--db", filepath.Join(b.dir, "onair.db")}
	if b.cfg.databaseURL != "" {
		db = []string{"--database-url", b.cfg.databaseURL}
	}
	cmd := exec.Command(b.cfg.server, append([]string{"serve", "--addr", addr,
		"--shutdown-drain", "0s", "--max-tabs-per-user", strconv.Itoa(max(32, b.cfg.tabs/b.cfg.users+1))}, db...)...)
	cmd.Env = append(os.Environ(),
		"ZOOM_WEBHOOK_SECRET_TOKEN="+b.cfg.webhookSecret,
		"ONAIR_TOKEN_SECRET="+b.cfg.tokenSecret,
		"ONAIR_DB_SYNC="+b.cfg.dbSync,
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", b.cfg.server, err)
	}
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
	case bound := <-listening:
		return cmd, bound, nil
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		return nil, "", fmt.Errorf("onair did not start listening")
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, "", ctx.Err()
	}
}

// restart stops the server with SIGTERM (tabs get 1012) and starts it again
// on the same address and database.
// It returns how long the old server took to exit.
func (b *bench) restart(ctx context.Context) (time.Duration, error) {
	if b.cmd == nil {
		return 0, fmt.Errorf("storm with a restart needs --server")
	}
	start := time.Now()
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	stopped := time.Since(start)
	return stopped, b.start(ctx, b.addr)
}

func (b *bench) close() {
	b.posters.closeIdle()
	for _, cmd := range append([]*exec.Cmd{b.cmd}, b.others...) {
		if cmd == nil {
			continue
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// serverPIDs are the servers' processes: all the nodes started, or --pid.
func (b *bench) serverPIDs() []int {
	if b.cmd == nil {
		if b.cfg.pid == 0 {
			return nil
		}
		return []int{b.cfg.pid}
	}
	pids := []int{b.cmd.Process.Pid}
	for _, c := range b.others {
		pids = append(pids, c.Process.Pid)
	}
	return pids
}

// rss returns the servers' resident set in bytes (0 when unknown).
func (b *bench) rss() int64 {
	var sum int64
	for _, pid := range b.serverPIDs() {
		sum += rssOf(pid)
	}
	return sum
}

func rssOf(pid int) int64 {
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

// cpu returns the servers' user+system CPU time so far.
func (b *bench) cpu() time.Duration {
	var sum time.Duration
	for _, pid := range b.serverPIDs() {
		sum += cpuOf(pid)
	}
	return sum
}

func cpuOf(pid int) time.Duration {
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
