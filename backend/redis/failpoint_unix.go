//go:build necro_failpoint && unix

package redis

import (
	"os"
	"syscall"
)

// crash ends the process as kill -9 would: no deferred call, no flush.
func crash() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal arrives
}
