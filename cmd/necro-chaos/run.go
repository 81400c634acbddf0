package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A plan is a scenario that follows the common course: start a cluster, produce roots
// while the faults happen, then heal everything, drain and check.
type plan struct {
	cluster clusterConfig
	roots   int           // roots to produce
	over    time.Duration // spread over this long
	mix     mix
	// faults runs while the roots are produced; it must leave the cluster healed
	// (proxies restored, Redis running) when it returns.
	faults func(ctx context.Context, r *scenarioRun) error
	// extra runs before the producer, on a running cluster (poison entries, say).
	extra func(ctx context.Context, r *scenarioRun) error
	// lossAllowed: the scenario's setup may lose acknowledged writes; lost events and
	// missing dead letters are reported, not failed.
	lossAllowed bool
	// after adds checks of its own once the run is drained and stopped.
	after func(r *scenarioRun) []string
}

// A scenarioRun is one plan being carried out.
type scenarioRun struct {
	name   string
	c      *cluster
	p      *producer
	rng    *rand.Rand
	res    *result
	logf   func(string, ...any)
	poison map[string]bool // stream ids of the poison entries written

	mu    sync.Mutex
	kills int // worker processes the harness killed
}

// A result is one scenario's outcome and figures, as the report prints them.
type result struct {
	Scenario     string         `json:"scenario"`
	Tier         string         `json:"tier"`
	Passed       bool           `json:"passed"`
	Problems     []string       `json:"problems,omitempty"`
	Seconds      float64        `json:"seconds"`
	DrainSeconds float64        `json:"drain_seconds"`
	Verdict      *verdict       `json:"checks,omitempty"`
	Kills        int            `json:"worker_kills"`    // by the harness
	Crashes      int            `json:"worker_crashes"`  // ended by themselves (exit directive, failpoint)
	Restarts     int            `json:"worker_restarts"` // processes started after the first K
	ProducerErrs int            `json:"producer_retries"`
	DrainExits   []exitRecord   `json:"drain_exits,omitempty"`
	Figures      map[string]any `json:"figures,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
}

func (r *scenarioRun) figure(name string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res.Figures == nil {
		r.res.Figures = make(map[string]any)
	}
	r.res.Figures[name] = v
}

func (r *scenarioRun) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}

// kill ends a worker with SIGKILL and waits until the process is gone, so that the
// kill is over when the faults are; the supervisor restarts the slot. A slot that is
// down already (still being restarted) is left alone.
func (r *scenarioRun) kill(ctx context.Context, w *worker) error {
	gone := w.signal(sigkill)
	if gone == nil {
		r.logf("kill %s: no process to kill", w.name)
		return nil
	}
	r.mu.Lock()
	r.kills++
	r.mu.Unlock()
	r.logf("killed %s", w.name)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-gone:
		return nil
	}
}

// execute carries out p and fills res.
func (p plan) execute(ctx context.Context, o options, name string, res *result) error {
	dir := filepath.Join(o.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf := o.logf(name)
	start := time.Now()
	c, err := startCluster(ctx, o.bin, dir, p.cluster, logf)
	if err != nil {
		return err
	}
	defer c.close()
	prod, err := newProducer(ctx, c.redisConfig())
	if err != nil {
		return err
	}
	defer prod.close()
	r := &scenarioRun{name: name, c: c, p: prod, rng: rand.New(rand.NewPCG(o.seed, uint64(len(name)))), res: res, logf: logf,
		poison: make(map[string]bool)}

	if p.extra != nil {
		if err := p.extra(ctx, r); err != nil {
			return err
		}
	}
	evs, err := roots(r.rng, p.mix, 0, p.roots)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var prodErr, faultErr error
	wg.Go(func() { prodErr = prod.produce(ctx, evs, 50, p.over) })
	if p.faults != nil {
		wg.Go(func() { faultErr = p.faults(ctx, r) })
	}
	wg.Wait()
	if err := errors.Join(prodErr, faultErr); err != nil {
		return err
	}
	// The faults are over, and every slot must be up and ready before the drain: a
	// worker the faults ended last is otherwise still down, or starting, when the drain
	// stops the workers, and its end is judged as the drain's.
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		return fmt.Errorf("after the faults: %w", err)
	}
	logf("produced %d roots; draining", len(prod.sent()))

	x, err := expect(prod.sent())
	if err != nil {
		return err
	}
	drainStart := time.Now()
	if err := r.drain(ctx, x, o.drainTimeout); err != nil {
		r.note("%v", err)
	}
	// A worker that crashed during the drain (an exit directive) may be starting again;
	// the stop is for workers that run.
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		r.note("before the stop: %v", err)
	}
	res.DrainExits = c.stopAll(p.cluster.DrainTimeout + 10*time.Second)
	res.DrainSeconds = time.Since(drainStart).Seconds()
	ev, err := gather(ctx, c.ledgers(), c.redisConfig())
	if err != nil {
		return err
	}
	v := judge(x, ev, r.poison)
	res.Verdict = &v
	res.Seconds = time.Since(start).Seconds()
	res.Kills = r.kills
	for _, w := range c.workers {
		res.Restarts += w.starts - 1
		for _, e := range w.history() {
			if e.Signal != "" && !e.ByUs {
				res.Crashes++
			}
		}
	}
	prod.mu.Lock()
	res.ProducerErrs = prod.failures
	prod.mu.Unlock()

	res.Problems = append(res.Problems, v.problems(p.lossAllowed)...)
	res.Problems = append(res.Problems, stopProblems(res.DrainExits)...)
	if p.after != nil {
		res.Problems = append(res.Problems, p.after(r)...)
	}
	return nil
}

// drain heals the cluster and waits until every expected pair is settled and Redis
// holds nothing pending, unread or delayed, or until timeout.
func (r *scenarioRun) drain(ctx context.Context, x expectation, timeout time.Duration) error {
	if !r.c.redis.Running() {
		if err := r.c.redis.Restart(); err != nil {
			return fmt.Errorf("restart redis-server for the drain: %w", err)
		}
	}
	for _, w := range r.c.workers {
		w.proxy.Resume()
		w.proxy.Restore()
	}
	deadline := time.Now().Add(timeout)
	var last verdict
	for {
		if err := r.c.ensureRunning(); err != nil {
			r.logf("drain: start the workers that are down: %v", err)
		}
		ev, err := gather(ctx, r.c.ledgers(), r.c.redisConfig())
		if err == nil {
			last = judge(x, ev, r.poison)
			if last.complete() {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drain: not complete after %v: %d lost, %d pending, %d unread, %d delayed (last error: %v)",
				timeout, last.Lost, last.Pending, last.Lag, last.Delayed, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pick returns a random worker.
func (r *scenarioRun) pick() *worker { return r.c.workers[r.rng.IntN(len(r.c.workers))] }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
