// Command onair-bench drives a running onair through its public contract
// only (signed webhooks, connection tokens, WebSocket frames), the way Zoom
// and browsers do, and reports what it measured as a table and a JSON line.
//
//	onair-bench [flags] ingest|push|idle|storm|slow|soak
//
// With --server PATH it starts (and for storm, restarts) onair itself on a
// fresh database; with --url it drives a server that is already running.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"
)

type benchConfig struct {
	scenario      string
	server        string // onair binary to start; "" to use url
	url           string
	pid           int
	webhookSecret string
	tokenSecret   string
	concurrency   int
	duration      time.Duration
	tabs          int
	users         int
	rate          int
	stuck         int
	hold          time.Duration
	dbSync        string
	databaseURL   string
	nodes         int
}

func main() {
	// The tool shares the machine with the server it measures, and its own
	// collections show in the latency it measures: a browser's would
	// delay one tab, the tool's delay all of them. At 2000% the heap of
	// 10,000 tabs (~25 MiB live) is collected about once in two minutes of
	// push at 1,000/s; at 400% it was once per 10 s run, and a fifth of the
	// frames over 1.5 ms came in that collection.
	debug.SetGCPercent(2000)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "onair-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := benchConfig{}
	fs.StringVar(&c.server, "server", "", "onair binary to start on a fresh database (needed by storm to restart it)")
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of a running onair (ignored with --server)")
	fs.IntVar(&c.pid, "pid", 0, "pid of the running onair, for RSS and CPU (ignored with --server)")
	fs.StringVar(&c.webhookSecret, "webhook-secret", "bench-webhook-secret", "Zoom webhook secret the server verifies")
	fs.StringVar(&c.tokenSecret, "token-secret", "bench-token-secret", "connection token secret the server verifies")
	fs.IntVar(&c.concurrency, "c", 64, "concurrent webhook senders (keep-alive)")
	fs.DurationVar(&c.duration, "d", 10*time.Second, "how long webhooks are sent")
	fs.IntVar(&c.tabs, "n", 1000, "WebSocket tabs")
	fs.IntVar(&c.users, "u", 0, "users the tabs are spread over (default: one per tab)")
	fs.IntVar(&c.rate, "r", 1000, "webhooks per second (push, storm, slow)")
	fs.IntVar(&c.stuck, "m", 100, "tabs that stop reading (slow)")
	fs.DurationVar(&c.hold, "hold", time.Minute, "how long idle tabs are held (idle)")
	fs.StringVar(&c.dbSync, "db-sync", "normal", "ONAIR_DB_SYNC for a server started with --server")
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL (an empty database or schema) for servers started with --server, instead of SQLite")
	fs.IntVar(&c.nodes, "nodes", 1, "onair nodes to start with --server (more than one needs --database-url): webhooks go round-robin, tabs are spread")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: onair-bench [flags] ingest|push|idle|storm|slow|soak")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("name one scenario")
	}
	c.scenario = fs.Arg(0)
	if c.nodes < 1 || (c.nodes > 1 && (c.databaseURL == "" || c.server == "")) {
		return errors.New("--nodes above 1 needs --server and --database-url")
	}
	if c.nodes > 1 && c.scenario == "storm" {
		return errors.New("storm restarts one node: run it with --nodes 1")
	}
	if c.users <= 0 || c.users > c.tabs {
		c.users = c.tabs
	}
	fmt.Fprintf(stderr, "onair-bench: open files: %s\n", raiseFileLimit(c.tabs))

	scenarios := map[string]func(context.Context, *bench) (*report, error){
		"ingest": runIngest, "push": runPush, "idle": runIdle, "storm": runStorm, "slow": runSlow, "soak": runSoak,
	}
	fn, ok := scenarios[c.scenario]
	if !ok {
		return fmt.Errorf("unknown scenario %q", c.scenario)
	}
	b, err := newBench(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	rep, err := fn(ctx, b)
	if err != nil {
		return err
	}
	rep.write(stdout)
	return nil
}

// report is a scenario's result: ordered rows for the table, all in the JSON line.
type report struct {
	scenario string
	keys     []string
	values   map[string]any
	failed   []string
}

func newReport(scenario string) *report {
	return &report{scenario: scenario, values: map[string]any{}}
}

func (r *report) set(key string, v any) {
	if _, ok := r.values[key]; !ok {
		r.keys = append(r.keys, key)
	}
	r.values[key] = v
}

// check records a correctness failure (lost frames, gaps): the tool exits 1.
func (r *report) check(ok bool, what string) {
	if !ok {
		r.failed = append(r.failed, what)
	}
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "scenario %s\n", r.scenario)
	width := 0
	for _, k := range r.keys {
		width = max(width, len(k))
	}
	for _, k := range r.keys {
		fmt.Fprintf(w, "  %-*s  %v\n", width, k, format(r.values[k]))
	}
	out := map[string]any{"scenario": r.scenario, "ok": len(r.failed) == 0}
	for k, v := range r.values {
		out[k] = v
	}
	if len(r.failed) > 0 {
		sort.Strings(r.failed)
		out["failures"] = r.failed
		fmt.Fprintf(w, "  FAILED: %s\n", strings.Join(r.failed, "; "))
	}
	b, _ := json.Marshal(out)
	fmt.Fprintln(w, string(b))
}

func format(v any) string {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("%.3f", x)
	default:
		return fmt.Sprint(x)
	}
}

// raiseFileLimit raises the soft open-file limit to the hard one and says
// what that allows: each tab holds one socket.
func raiseFileLimit(tabs int) string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	allowed := int(lim.Cur) - 200 // stdio, senders' keep-alive connections, slack
	msg := fmt.Sprintf("limit %d, so at most %d tabs from this process (asked for %d)", lim.Cur, allowed, tabs)
	if tabs > allowed {
		msg += ": TOO MANY, the excess will fail to connect"
	}
	return msg
}
