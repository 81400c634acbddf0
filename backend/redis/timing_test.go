package redis_test

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/necrostack/necro/backend"
)

type timed struct {
	backend.Backend
	pullNs, settleNs, pulls, settles, pulled, settled atomic.Int64
}

func (t *timed) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	s := time.Now()
	ds, err := t.Backend.Pull(ctx, max)
	t.pullNs.Add(int64(time.Since(s)))
	t.pulls.Add(1)
	t.pulled.Add(int64(len(ds)))
	return ds, err
}

func (t *timed) Settle(ctx context.Context, b ...backend.Settlement) error {
	s := time.Now()
	err := t.Backend.Settle(ctx, b...)
	t.settleNs.Add(int64(time.Since(s)))
	t.settles.Add(1)
	t.settled.Add(int64(len(b)))
	return err
}
