//go:build !unix

package web

import (
	"errors"
	"net"
	"syscall"
)

// rawConnOf returns nil: pings go through the library on this system.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func writeFd(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
