//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death signal; the suite
// stops its Jaeger when it ends.
func dieWithParent(*exec.Cmd) {}
