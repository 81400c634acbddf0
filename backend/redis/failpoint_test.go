//go:build necro_failpoint

package redis_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/redistest"
)

// A worker that crashes as its settle script is about to run (the children exist only
// in its memory), or right after it ran (before the reply is used), loses nothing:
// another worker claims what it held and handles it again, emitting the same ids.
func TestFaultCrashBetweenHandleAndSettle(t *testing.T) {
	for _, tt := range []struct {
		failpoint string
		wantDups  bool // the parents of the crashed settle are handled again
	}{
		{"before-settle:5", true},
		{"after-settle:5", false},
	} {
		t.Run(tt.failpoint, func(t *testing.T) {
			r := newRig(t, redistest.Config{}, 300)
			r.enqueue()
			w1 := r.start("w1", workerOpts{pause: time.Millisecond, failpoint: tt.failpoint})
			w1.stopped = true // it is meant to crash
			select {
			case <-w1.done:
			case <-time.After(completeWithin):
				t.Fatalf("w1 armed with %s did not crash within %v", tt.failpoint, completeWithin)
			}
			if ws, ok := w1.state.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("w1 armed with %s %s, want killed by SIGKILL", tt.failpoint, w1.exitText())
			}
			crashed := r.read()
			if crashed.handles() == 0 {
				t.Fatalf("w1 crashed before handling anything")
			}
			t.Logf("w1 crashed at %s after %d handles", tt.failpoint, crashed.handles())
			r.start("w2", workerOpts{pause: time.Millisecond})
			tl := r.finish()
			if tt.wantDups && len(tl.duplicates()) == 0 {
				t.Errorf("no pair handled twice: the deliveries of w1's crashed settle were not handled again")
			}
		})
	}
}
