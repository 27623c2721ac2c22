package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealthcheck probes a running server, for container HEALTHCHECKs: the
// runtime image has no shell, curl or wget.
func runHealthcheck(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	target := o.add("url", "", "http://127.0.0.1:8080/healthz", "URL to probe; 2xx is healthy")
	if err := o.parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.str(), nil)
	if err != nil {
		return usageErrorf("--url: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("unhealthy: %s answered %s", target.str(), resp.Status)
	}
	fmt.Fprintln(stdout, "healthy")
	return nil
}
