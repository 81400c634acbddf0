//go:build !linux

package redisproc

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death signal; the owner
// of the server must Stop or Kill it.
func dieWithParent(*exec.Cmd) {}
