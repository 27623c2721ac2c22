//go:build unix

package web

import (
	"net"
	"syscall"
)

// rawConnOf returns the socket under c for writing pings, or nil.
func rawConnOf(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

func writeFd(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
