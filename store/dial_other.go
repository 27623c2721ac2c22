//go:build !linux

package store

import (
	"syscall"
	"time"
)

// userTimeout: only Linux has TCP_USER_TIMEOUT; elsewhere the keepalives
// alone notice a vanished server.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error { return nil }
