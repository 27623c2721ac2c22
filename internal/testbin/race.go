//go:build race

package testbin

func init() { raceEnabled = true }
