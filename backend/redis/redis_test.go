package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/backendtest"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// unique returns prefix and 8 random hex digits, for stream, group and consumer names
// that no other test uses.
func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// open returns a store on a fresh stream of srv, closed when the test ends.
func open(t *testing.T, srv *redistest.Server, cfg necroredis.Config) *necroredis.Backend {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = srv.URL()
	}
	if cfg.Stream == "" {
		cfg.Stream = unique("necro:test:")
	}
	if cfg.Group == "" {
		cfg.Group = unique("test-group-")
	}
	if cfg.Block == 0 {
		cfg.Block = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := necroredis.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.Stream, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
			t.Errorf("Close() = %v", err)
		}
	})
	return b
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	backendtest.Run(t, func(t *testing.T, cfg backendtest.Config) backend.Backend {
		return open(t, srv, necroredis.Config{Capacity: cfg.Capacity, NackDelay: cfg.NackDelay})
	})
}
