package jaegertest

import (
	"os"
	"os/exec"
	"syscall"
)

// dieWithParent asks the kernel to kill Jaeger when the test process dies, even by
// SIGKILL, so that no Jaeger outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// lockFile takes an exclusive lock on path, creating the file, and waits for it as long
// as another process holds it. The lock goes with the process, so a crashed holder
// leaves none behind.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close() // the lock failed; that error is the one to report
		return nil, err
	}
	return func() { _ = f.Close() }, nil // closing releases the lock
}
