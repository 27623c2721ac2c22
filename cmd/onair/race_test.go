//go:build race

package main

// Under -race the binary the tests drive is built with -race too.
func init() { raceEnabled = true }
