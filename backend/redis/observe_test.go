package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// Ready passes while Redis answers and the group exists, and names what is wrong
// otherwise; Report gives the levels metrics show, and -1 when Redis is gone.
func TestReadyAndReport(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	cfg := necroredis.Config{Stream: unique("necro:test:"), Group: unique("g-")}
	b := open(t, srv, cfg)
	ctx := t.Context()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v, want nil on a fresh store", err)
	}
	if d := b.Describe(); d.System != "redis" || d.Name != cfg.Stream || d.Group != cfg.Group {
		t.Errorf("Describe = %+v, want redis, %s, %s", d, cfg.Stream, cfg.Group)
	}
	for i := range 3 {
		ev, err := necro.NewEvent("x", map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Enqueue(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := b.Pull(ctx, 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Pull = %d, %v", len(ds), err)
	}
	if rep := b.Report(ctx); rep.QueueDepth != 2 || rep.Pending != 1 || rep.DeadLetters != 0 || rep.Reconnections != 0 {
		t.Errorf("Report = %+v, want depth 2, pending 1, no dead letters, no reconnections", rep)
	}

	if _, err := srv.Do("XGROUP", "DESTROY", cfg.Stream, cfg.Group); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(ctx); err == nil || !strings.Contains(err.Error(), cfg.Group) {
		t.Errorf("Ready without the group = %v, want an error naming the group %s", err, cfg.Group)
	}

	srv.Kill()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Ready(cctx); err == nil {
		t.Errorf("Ready with Redis gone = nil, want an error")
	}
	if rep := b.Report(cctx); rep.QueueDepth != -1 || rep.Pending != -1 || rep.DeadLetters != -1 {
		t.Errorf("Report with Redis gone = %+v, want -1 levels", rep)
	}
}
