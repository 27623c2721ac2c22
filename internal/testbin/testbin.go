// Package testbin builds onair's binary for tests that drive it as a
// process (the crash, shutdown and load-tool tests).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles the main package in dir into a temporary folder, with
// -race when the calling test binary runs with -race (so the server's own
// races are caught too), and returns the binary's path and a cleanup.
func Build(dir string) (string, func(), error) {
	tmp, err := os.MkdirTemp("", "onair-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(tmp, "onair")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, dir)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("go build %s: %w", dir, err)
	}
	return bin, func() { os.RemoveAll(tmp) }, nil
}

// raceEnabled is set by race.go when built with -race.
var raceEnabled bool
