package netproxy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/necrostack/necro/internal/netproxy"
	"github.com/necrostack/necro/internal/redisproc"
)

// startRedis runs a redis-server behind a proxy. It skips the test when redis-server is
// missing, unless CI is set.
func startRedis(t *testing.T) (*redisproc.Server, *netproxy.Proxy) {
	t.Helper()
	s, err := redisproc.Start(redisproc.Config{Dir: t.TempDir(), AppendOnly: true})
	if errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s, newProxy(t, s.Addr())
}

// redisClient connects to addr with a short read timeout, so that a stalled command
// fails within a test's patience, and retries as go-redis does by default.
func redisClient(t *testing.T, addr string, readTimeout time.Duration) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: time.Second, ReadTimeout: readTimeout, WriteTimeout: time.Second,
		PoolSize: 4,
	})
	t.Cleanup(func() { _ = c.Close() }) // the test is over
	return c
}

func TestRedisThroughTheProxy(t *testing.T) {
	_, p := startRedis(t)
	c := redisClient(t, p.Addr(), time.Second)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET through the proxy = %q, %v; want v", got, err)
	}
	if st := p.Stats(); st.Accepted == 0 || st.BytesUp == 0 || st.BytesDown == 0 {
		t.Errorf("Stats() = %+v, want traffic counted", st)
	}
}

func TestRedisCutFailsFastUntilRestore(t *testing.T) {
	_, p := startRedis(t)
	// A long read timeout: a command that fails must fail because of the cut, not wait.
	c := redisClient(t, p.Addr(), 10*time.Second)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	began := time.Now()
	err := c.Get(ctx, "k").Err()
	if took := time.Since(began); err == nil || took > 2*time.Second {
		t.Fatalf("GET during a cut = %v after %v; want an error within 2s", err, took)
	}
	t.Logf("GET during a cut failed after %v: %v", time.Since(began), err)
	fresh := redisClient(t, p.Addr(), 10*time.Second)
	if err := fresh.Ping(ctx).Err(); err == nil {
		t.Fatal("PING on a new client during a cut succeeded")
	}
	if st := p.Stats(); st.Refused == 0 || st.Open != 0 {
		t.Errorf("Stats() during the cut = %+v, want refusals and nothing open", st)
	}
	p.Restore()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Restore = %q, %v; want v", got, err)
	}
}

func TestRedisStallTimesOutUntilResume(t *testing.T) {
	_, p := startRedis(t)
	c := redisClient(t, p.Addr(), 300*time.Millisecond)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	began := time.Now()
	err := c.Get(ctx, "k").Err()
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("GET during a stall = %v after %v; want a timeout", err, time.Since(began))
	}
	if st := p.Stats(); st.Open == 0 {
		t.Errorf("Stats() during the stall = %+v, want connections kept open", st)
	}
	p.Resume()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Resume = %q, %v; want v", got, err)
	}
}

// TestRedisRestartBehindTheProxy kills Redis behind the proxy: clients fail while it
// is down and work again once it is back on the same port.
func TestRedisRestartBehindTheProxy(t *testing.T) {
	s, p := startRedis(t)
	c := redisClient(t, p.Addr(), time.Second)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING with Redis killed succeeded")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Redis restarted = %q, %v; want v", got, err)
	}
}

// TestRedisConcurrentTraffic runs a pool of connections at once through the proxy
// while it stalls briefly now and then; no increment may be lost or doubled.
func TestRedisConcurrentTraffic(t *testing.T) {
	_, p := startRedis(t)
	c := redisClient(t, p.Addr(), 5*time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	var toggler sync.WaitGroup
	toggler.Go(func() {
		for {
			select {
			case <-ctx.Done():
				p.Resume()
				return
			case <-time.After(15 * time.Millisecond):
			}
			p.Stall()
			time.Sleep(5 * time.Millisecond)
			p.Resume()
		}
	})
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for j := range each {
				if err := c.Incr(t.Context(), "n").Err(); err != nil {
					t.Errorf("worker %d, INCR %d: %v", i, j, err)
					return
				}
				if err := c.Set(t.Context(), fmt.Sprintf("k%d", i), j, 0).Err(); err != nil {
					t.Errorf("worker %d, SET %d: %v", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	toggler.Wait()
	if n, err := c.Get(t.Context(), "n").Int(); err != nil || n != workers*each {
		t.Fatalf("n = %d, %v after %d INCRs; want %d", n, err, workers*each, workers*each)
	}
}
