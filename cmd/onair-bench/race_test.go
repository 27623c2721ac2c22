//go:build race

package main

// Under -race the onair binary the smoke tests start is built with -race too.
func init() { raceEnabled = true }
