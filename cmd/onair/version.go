package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

func runVersion(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	if err := o.parse(args); err != nil {
		return err
	}
	v := version
	if v == "" {
		v = "devel"
		if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
	}
	fmt.Fprintf(stdout, "onair %s\n", v)
	return nil
}
