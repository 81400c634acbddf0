package redisproc

import (
	"os/exec"
	"syscall"
)

// dieWithParent asks the kernel to kill the server when its parent dies, even by
// SIGKILL, so that no server outlives the program or test that started it.
//
// Strictly, the kernel sends the signal when the thread that started the server ends.
// Go keeps its threads for the life of the process, except one whose goroutine exits
// while locked to it (runtime.LockOSThread); a program that does that may see its
// servers die early.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
