//go:build unix && !linux

package main

import (
	"runtime"
	"syscall"
)

// peakRSS returns the process's peak resident set size so far, in bytes (getrusage's
// ru_maxrss), or -1 when the system does not tell.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss) // bytes there
	}
	return int64(ru.Maxrss) * 1024 // KiB elsewhere
}
