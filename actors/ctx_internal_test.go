package actors

import (
	"context"
	"sync"
	"testing"
)

// A handler may ask for its ctx's Done channel at the very moment the watchdog ends the
// ctx (a stop cancels every running call). Whichever comes first, the channel must end
// up closed, once: closing it twice panics the watchdog and with it the process.
func TestHandleCtxDoneRacingExpireClosesOnce(t *testing.T) {
	for range 100_000 {
		c := &handleCtx{parent: context.Background()}
		var wg sync.WaitGroup
		wg.Go(func() { c.end(ctxCanceled) })
		wg.Go(func() { <-c.Done() })
		wg.Wait()
		if c.Err() != context.Canceled {
			t.Fatalf("Err() = %v after end(ctxCanceled), want context.Canceled", c.Err())
		}
	}
}
