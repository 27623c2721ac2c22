// Command onair is the "your meeting is live" push server: Zoom webhooks in,
// WebSocket frames out to every open tab of the user.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// subcommand runs with its own arguments and returns an error: errUsage
// (exit 2), errHelp (usage, exit 0), or any other (exit 1).
type subcommand struct {
	summary string
	run     func(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error
}

var subcommands = map[string]subcommand{
	"serve":       {"onair serve: run the server (the default)", runServe},
	"simulate":    {"onair simulate started|ended|joined|left|deauthorized --user ZOOM_USER_ID: send one signed Zoom-shaped webhook", runSimulate},
	"token":       {"onair token --user ZOOM_USER_ID [--ttl 1h]: print a connection token", runToken},
	"backup":      {"onair backup --to FILE: write a consistent copy of the SQLite database", runBackup},
	"version":     {"onair version: print the version", runVersion},
	"healthcheck": {"onair healthcheck [--url URL]: exit 0 when a running server answers 2xx (for container HEALTHCHECKs)", runHealthcheck},
}

// run is main without the process: tests call it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 {
		if _, ok := subcommands[args[0]]; ok {
			name, args = args[0], args[1:]
		}
	}
	cmd := subcommands[name]
	o := newOptions("onair "+name, cmd.summary, getenv)
	err := cmd.run(ctx, o, args, stdout, stderr)
	var usageErr errUsage
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		o.usage(stdout)
		if name == "serve" {
			fmt.Fprintln(stdout, "\nSubcommands: serve (default), simulate, token, backup, version, healthcheck; each has --help.")
		}
		return 0
	case errors.As(err, &usageErr):
		help := "onair --help"
		if name != "serve" {
			help = "onair " + name + " --help"
		}
		fmt.Fprintf(stderr, "onair: %s (see %s)\n", usageErr.msg, help)
		return 2
	default:
		fmt.Fprintf(stderr, "onair: %s\n", err)
		return 1
	}
}
