package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent asks the kernel to kill the child when the suite dies, even by SIGKILL,
// so that no Jaeger outlives its suite.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
