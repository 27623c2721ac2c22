package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"onair/internal/testbin"
)

// onairBin is the onair binary the scenarios start with --server, built
// once by TestMain (with -race when the tests run with -race).
var onairBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := testbin.Build("../onair")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	onairBin = bin
	// The tool starts onair with this process's environment: a -race onair
	// would otherwise sleep 1 s at every exit (storm restarts it).
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// lockedBuffer collects the tool's stderr, which onair's log reader
// goroutines write to concurrently.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runScenario runs the tool against a fresh onair and returns the JSON
// line it printed, after checking the correctness fields every scenario
// shares.
func runScenario(t *testing.T, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	var stderr lockedBuffer
	args = append([]string{"--server", onairBin}, args...)
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("onair-bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("onair-bench %s\n%s", strings.Join(args, " "), stdout.String())
	var rep map[string]any
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "{") || json.Unmarshal([]byte(last), &rep) != nil {
		t.Fatalf("no JSON line at the end of stdout:\n%s", stdout.String())
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf(format, a...)
	}
	if rep["ok"] != true {
		fail("ok: %v, failures: %v", rep["ok"], rep["failures"])
	}
	for _, key := range []string{"frames_lost", "gaps", "duplicates"} {
		if v, present := rep[key]; present && v != float64(0) {
			fail("%s: %v, want 0", key, v)
		}
	}
	// A -race onair reports races on its stderr, which the tool passes on.
	if strings.Contains(stderr.String(), "DATA RACE") {
		fail("onair reported a data race")
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr.String())
	}
	return rep
}

// want checks that a numeric field of the report equals n.
func want(t *testing.T, rep map[string]any, key string, n float64) {
	t.Helper()
	if v, ok := rep[key].(float64); !ok || v != n {
		t.Errorf("%s: %v, want %v", key, rep[key], n)
	}
}

// positive checks that a numeric field of the report is above zero.
func positive(t *testing.T, rep map[string]any, key string) {
	t.Helper()
	if v, ok := rep[key].(float64); !ok || v <= 0 {
		t.Errorf("%s: %v, want > 0", key, rep[key])
	}
}

func TestIngest(t *testing.T) {
	rep := runScenario(t, "-c", "4", "-d", "1s", "ingest")
	positive(t, rep, "accepted")
	want(t, rep, "not_accepted", 0)
	want(t, rep, "acked_missing_from_state", 0)
}

func TestPush(t *testing.T) {
	rep := runScenario(t, "-n", "200", "-u", "100", "-r", "200", "-d", "2s", "push")
	positive(t, rep, "frames_received")
}

func TestIdle(t *testing.T) {
	rep := runScenario(t, "-n", "200", "-hold", "2s", "idle")
	want(t, rep, "tabs_open_at_end", 200)
}

func TestStorm(t *testing.T) {
	rep := runScenario(t, "-n", "200", "-u", "50", "-r", "100", "storm")
	want(t, rep, "tabs_back", 200)
	want(t, rep, "welcomes_fresh_snapshot", 0)
}

func TestSlow(t *testing.T) {
	rep := runScenario(t, "-n", "200", "-u", "100", "-m", "5", "-r", "200", "-d", "2s", "slow")
	positive(t, rep, "frames_received")
	want(t, rep, "hot_tabs", 5)
}
