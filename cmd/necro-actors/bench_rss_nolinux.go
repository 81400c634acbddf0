//go:build !linux

package main

// currentRSS returns -1: only Linux's /proc tells the current resident set size.
func currentRSS() int64 { return -1 }
