package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLastKillIsNotJudgedAsTheDrain kills a worker as the fault schedule's last act,
// when the workers have nothing left to do, so the drain is complete at once. The
// kill belongs to the faults: the drain must stop every worker with SIGTERM, each must
// exit 0, and the run must pass.
func TestLastKillIsNotJudgedAsTheDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs necro-actors workers; -short skips it")
	}
	bin := workerBinary(t)
	p := plan{cluster: defaultCluster(), roots: 200, over: time.Second, mix: baseMix,
		faults: func(ctx context.Context, r *scenarioRun) error {
			if err := waitComplete(ctx, r, 200); err != nil {
				return err
			}
			return r.kill(ctx, r.c.workers[1])
		},
	}
	o := options{bin: bin, dir: t.TempDir(), seed: 1, drainTimeout: time.Minute, verbose: testLog{t}, mu: new(sync.Mutex)}
	var res result
	if err := p.execute(t.Context(), o, "last-kill", &res); err != nil {
		t.Fatal(err)
	}
	if res.Kills != 1 {
		t.Errorf("%d kills, want 1", res.Kills)
	}
	if len(res.Problems) > 0 {
		t.Errorf("the run failed: %s", strings.Join(res.Problems, "; "))
	}
	if len(res.DrainExits) != 3 {
		t.Errorf("%d drain exits, want one per worker: %v", len(res.DrainExits), res.DrainExits)
	}
	for _, e := range res.DrainExits {
		if e.Code != 0 || e.Signal != "" || !e.Term || e.Down {
			t.Errorf("the drain judged %s, want exit 0 at its SIGTERM", e)
		}
	}
	if res.Crashes != 0 || res.Restarts != 1 {
		t.Errorf("%d crashes and %d restarts; want none (the kill was the harness's) and 1 (after it)", res.Crashes, res.Restarts)
	}
}

// waitComplete waits until the producer has sent n roots and the workers have settled
// everything they demand.
func waitComplete(ctx context.Context, r *scenarioRun, n int) error {
	for {
		if sent := r.p.sent(); len(sent) >= n {
			x, err := expect(sent)
			if err != nil {
				return err
			}
			if ev, err := gather(ctx, r.c.ledgers(), r.c.redisConfig()); err == nil && judge(x, ev, r.poison).complete() {
				return nil
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// workerBinary builds necro-actors for the test, or skips it when redis-server is
// missing and CI is not set.
func workerBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH, and CI is set: %v", err)
		}
		t.Skipf("redis-server not found on PATH: %v", err)
	}
	bin, err := buildWorker(t.Context(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// testLog writes the harness's progress lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
