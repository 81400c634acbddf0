package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/chaosapp"
	"github.com/necrostack/necro/internal/redisproc"
)

// A tier sizes the scenarios: short for CI (minutes in all), full for `make chaos`.
type tier struct {
	name  string
	scale float64 // of the roots
	long  bool    // the full durations: 30s of kills, a 20s stall
}

// failpointEnv arms a crash point of the Redis store in a worker built with the
// necro_failpoint tag, as buildWorker builds them (see backend/redis/failpoint.go).
const failpointEnv = "NECRO_REDIS_FAILPOINT"

var (
	shortTier = tier{name: "short", scale: 0.2}
	fullTier  = tier{name: "full", scale: 1, long: true}
)

func (t tier) n(full int) int { return max(1, int(float64(full)*t.scale)) }

// pick returns the full-tier value or the short one.
func pickDur(t tier, full, short time.Duration) time.Duration {
	if t.long {
		return full
	}
	return short
}

// A scenario is a named run with its figures.
type scenario struct {
	name string
	what string // one line for the report
	run  func(ctx context.Context, o options, t tier, res *result) error
}

// defaultCluster is 3 workers on a Redis that fsyncs every write, taking over a dead
// worker's entries after 2s.
func defaultCluster() clusterConfig {
	return clusterConfig{Workers: 3, AppendFsync: "always", ClaimAfter: 2 * time.Second,
		RestartDelay: 300 * time.Millisecond, DrainTimeout: 20 * time.Second}
}

// baseMix is the traffic around the faults: mostly plain successes, some fan-out to
// children, some short sleeps so that work is in flight when a fault strikes.
func baseMix(rng *rand.Rand, _ int) chaosapp.Directive {
	switch x := rng.IntN(100); {
	case x < 15:
		return chaosapp.Directive{Do: chaosapp.DoEmit, N: 1 + rng.IntN(3)}
	case x < 25:
		return chaosapp.Directive{Do: chaosapp.DoSleep, MS: 1 + rng.IntN(10)}
	case x < 28:
		return chaosapp.Directive{Do: chaosapp.DoFailOnce}
	case x < 30:
		return chaosapp.Directive{Do: chaosapp.DoPanicOnce}
	default:
		return chaosapp.Directive{Do: chaosapp.DoOK}
	}
}

// withShare returns baseMix with pct percent of the roots carrying d instead.
func withShare(pct float64, d chaosapp.Directive) mix {
	return func(rng *rand.Rand, seq int) chaosapp.Directive {
		if rng.Float64()*100 < pct {
			return d
		}
		return baseMix(rng, seq)
	}
}

func (p plan) scenario(name, what string) scenario {
	return scenario{name: name, what: what, run: func(ctx context.Context, o options, _ tier, res *result) error {
		return p.execute(ctx, o, name, res)
	}}
}

// scenarios lists every scenario of the tier, in the order they run.
func scenarios(t tier) []scenario {
	base := defaultCluster()
	return []scenario{
		rollingKill(t, base),
		redisKill(t, base, "always"),
		redisKill(t, base, "everysec"),
		networkStall(t, base),
		networkCut(t, base),
		plan{cluster: base, roots: t.n(10_000), over: pickDur(t, 10*time.Second, 4*time.Second),
			mix: withShare(1, chaosapp.Directive{Do: chaosapp.DoPanic})}.
			scenario("panic-1pct", "1% of events panic on every attempt"),
		plan{cluster: base, roots: t.n(10_000), over: pickDur(t, 10*time.Second, 4*time.Second),
			mix: withShare(1, chaosapp.Directive{Do: chaosapp.DoHang})}.
			scenario("hang-1pct", "1% of events hang past the handler timeout on every attempt"),
		plan{cluster: base, roots: t.n(10_000), over: pickDur(t, 10*time.Second, 4*time.Second),
			mix: withShare(1, chaosapp.Directive{Do: chaosapp.DoFail})}.
			scenario("fail-1pct", "1% of events fail on every attempt"),
		plan{cluster: base, roots: t.n(10_000), over: pickDur(t, 10*time.Second, 4*time.Second),
			mix: withShare(1, chaosapp.Directive{Do: chaosapp.DoExit})}.
			scenario("exit-1pct", "1% of events kill their worker process (SIGKILL) the first time they are handled"),
		exitSmallWindow(t, base),
		budgets(t, base),
		crashBetweenEmitAndSettle(t, base),
		sigtermUnderLoad(t, base),
		poisonEntries(t, base),
		badCredentials(),
	}
}

// busyMix is baseMix with a tenth of the roots sleeping 5–50ms, so that every worker
// holds deliveries in flight when a fault strikes. (Organ work handles one event at a
// time: 10,000 roots of this mix keep it busy about 9s in all, spread over 3 workers.)
func busyMix(rng *rand.Rand, seq int) chaosapp.Directive {
	if rng.IntN(10) == 0 {
		return chaosapp.Directive{Do: chaosapp.DoSleep, MS: 5 + rng.IntN(45)}
	}
	return baseMix(rng, seq)
}

// rollingKill: every 2s a random worker gets SIGKILL, for 30s (10s in the short tier):
// 15 kills (5), the last as the roots end.
func rollingKill(t tier, base clusterConfig) scenario {
	span := pickDur(t, 30*time.Second, 10*time.Second)
	return plan{cluster: base, roots: t.n(10_000), over: span, mix: busyMix,
		faults: func(ctx context.Context, r *scenarioRun) error {
			for range span / (2 * time.Second) {
				if err := sleep(ctx, 2*time.Second); err != nil {
					return err
				}
				if err := r.kill(ctx, r.pick()); err != nil {
					return err
				}
			}
			return nil
		},
	}.scenario("rolling-kill", fmt.Sprintf("SIGKILL of a random worker every 2s for %v, 3 workers", span))
}

// redisKill: Redis gets SIGKILL a third into the run and comes back 2s later from its
// append-only file.
func redisKill(t tier, base clusterConfig, fsync string) scenario {
	base.AppendFsync = fsync
	over := pickDur(t, 12*time.Second, 6*time.Second)
	name := "redis-kill-" + fsync
	return plan{cluster: base, roots: t.n(10_000), over: over, mix: baseMix, lossAllowed: fsync != "always",
		faults: func(ctx context.Context, r *scenarioRun) error {
			if err := sleep(ctx, over/3); err != nil {
				return err
			}
			acked := len(r.p.sent())
			if err := r.c.redis.Kill(); err != nil {
				return err
			}
			r.logf("redis-server killed after %d acknowledged roots", acked)
			if err := sleep(ctx, 2*time.Second); err != nil {
				return err
			}
			if err := r.c.redis.Restart(); err != nil {
				return err
			}
			r.figure("acked_before_kill", acked)
			return nil
		},
		after: func(r *scenarioRun) []string {
			v := r.res.Verdict
			r.figure("lost_among_acknowledged", v.Lost)
			return nil
		},
	}.scenario(name, fmt.Sprintf("redis-server SIGKILL and restart, appendfsync %s", fsync))
}

// networkStall: one worker's connection to Redis stops moving bytes for 20s (6s in the
// short tier); its entries are taken over by the others after ClaimAfter.
func networkStall(t tier, base clusterConfig) scenario {
	stall := pickDur(t, 20*time.Second, 6*time.Second)
	over := stall + 4*time.Second
	return plan{cluster: base, roots: t.n(10_000), over: over, mix: baseMix,
		faults: func(ctx context.Context, r *scenarioRun) error {
			if err := sleep(ctx, 2*time.Second); err != nil {
				return err
			}
			w := r.c.workers[0]
			w.proxy.Stall()
			r.logf("stalled %s", w.name)
			err := sleep(ctx, stall)
			w.proxy.Resume()
			return err
		},
	}.scenario("network-stall", fmt.Sprintf("one worker's network stalled for %v by its proxy", stall))
}

// networkCut: two workers' connections are cut for 5s (3s), then restored.
func networkCut(t tier, base clusterConfig) scenario {
	cut := pickDur(t, 5*time.Second, 3*time.Second)
	over := cut + 4*time.Second
	return plan{cluster: base, roots: t.n(10_000), over: over, mix: baseMix,
		faults: func(ctx context.Context, r *scenarioRun) error {
			if err := sleep(ctx, 2*time.Second); err != nil {
				return err
			}
			for _, w := range r.c.workers[:2] {
				w.proxy.Cut()
			}
			err := sleep(ctx, cut)
			for _, w := range r.c.workers[:2] {
				w.proxy.Restore()
			}
			return err
		},
	}.scenario("network-cut", fmt.Sprintf("two workers' network cut for %v, then restored", cut))
}

// exitSmallWindow is exit-1pct with workers that pull at most 256 deliveries ahead of
// their commit instead of 4,096: a crash then redoes fewer handlings.
func exitSmallWindow(t tier, base clusterConfig) scenario {
	base.Window = 256
	return plan{cluster: base, roots: t.n(10_000), over: pickDur(t, 10*time.Second, 4*time.Second),
		mix: withShare(1, chaosapp.Directive{Do: chaosapp.DoExit})}.
		scenario("exit-1pct-window-256", "exit-1pct with --window 256: fewer handlings redone after each crash")
}

// budgets: emit loops (a chain that never ends) and fan-out bombs (one call emitting
// more than MaxFanOut children) among ordinary traffic; the depth and fan-out budgets
// must stop each with exactly the dead letter the directives predict.
func budgets(t tier, base clusterConfig) scenario {
	m := func(rng *rand.Rand, seq int) chaosapp.Directive {
		switch x := rng.IntN(100); {
		case x < 2:
			return chaosapp.Directive{Do: chaosapp.DoLoop}
		case x < 4:
			return chaosapp.Directive{Do: chaosapp.DoBomb, N: chaosapp.MaxFanOut + 1 + rng.IntN(1000)}
		}
		return baseMix(rng, seq)
	}
	return plan{cluster: base, roots: t.n(5_000), over: pickDur(t, 8*time.Second, 4*time.Second), mix: m}.
		scenario("budgets", "2% emit loops and 2% fan-out bombs, stopped by the depth and fan-out budgets")
}

// crashBetweenEmitAndSettle: two workers crash once each at a settle of a parent with
// children: one before the settle script runs (the children exist only in its memory),
// one right after it ran (before it learns the result).
func crashBetweenEmitAndSettle(t tier, base clusterConfig) scenario {
	m := func(rng *rand.Rand, _ int) chaosapp.Directive {
		return chaosapp.Directive{Do: chaosapp.DoEmit, N: 1 + rng.IntN(4)}
	}
	return plan{cluster: base, roots: t.n(5_000), over: pickDur(t, 8*time.Second, 4*time.Second), mix: m,
		extra: func(ctx context.Context, r *scenarioRun) error {
			// Restart w1 and w2 with a failpoint armed; the supervisor's later restarts
			// start them without it.
			for i, where := range []string{"before-settle", "after-settle"} {
				w := r.c.workers[i]
				w.hold(true)
				w.signal(sigterm)
				w.wait(30 * time.Second)
				w.hold(false)
				if err := w.start([]string{fmt.Sprintf("%s=%s:%d", failpointEnv, where, 3+2*i)}); err != nil {
					return err
				}
			}
			return r.c.waitReady(ctx, 30*time.Second)
		},
		after: func(r *scenarioRun) []string {
			crashes := 0
			for _, w := range r.c.workers[:2] {
				for _, e := range w.history() {
					if e.Signal == sigkill.String() && !e.ByUs {
						crashes++
					}
				}
			}
			r.figure("failpoint_crashes", crashes)
			if crashes != 2 {
				return []string{fmt.Sprintf("the failpoints crashed %d workers, want 2", crashes)}
			}
			return nil
		},
	}.scenario("crash-emit-settle", "a worker killed between emitting children and settling the parent (before and after the settle script)")
}

// sigtermUnderLoad: one worker gets SIGTERM while the others work: it must exit 0 and
// leave nothing pending under its name.
func sigtermUnderLoad(t tier, base clusterConfig) scenario {
	over := pickDur(t, 10*time.Second, 5*time.Second)
	return plan{cluster: base, roots: t.n(10_000), over: over, mix: busyMix,
		faults: func(ctx context.Context, r *scenarioRun) error {
			if err := sleep(ctx, over/2); err != nil {
				return err
			}
			w := r.c.workers[0]
			w.hold(true)
			w.signal(sigterm)
			rec := w.wait(base.DrainTimeout + 10*time.Second)
			r.figure("sigterm_exit", rec.String())
			left := int64(-1)
			if admin, err := necroredis.OpenAdmin(ctx, r.c.redisConfig()); err == nil {
				if in, err := admin.Inspect(ctx); err == nil {
					left = 0
					for _, g := range in.Groups {
						for _, cons := range g.Consumers {
							if cons.Name == w.name {
								left += cons.Pending
							}
						}
					}
				}
				_ = admin.Close()
			}
			r.figure("sigterm_pending_left", left)
			if rec.Code != 0 || left != 0 {
				r.note("SIGTERM under load: %s, %d pending left under its name", rec, left)
				r.figure("sigterm_failed", true)
			}
			w.hold(false)
			return w.start(nil)
		},
		after: func(r *scenarioRun) []string {
			if failed, _ := r.res.Figures["sigterm_failed"].(bool); failed {
				return []string{fmt.Sprintf("the worker stopped by SIGTERM: %v, pending left %v",
					r.res.Figures["sigterm_exit"], r.res.Figures["sigterm_pending_left"])}
			}
			return nil
		},
	}.scenario("sigterm-under-load", "SIGTERM to one worker under load: exit 0, nothing left pending under its name")
}

// poisonEntries writes entries no worker can decode among valid traffic: invalid
// JSON, the wrong shape, an oversized payload, an invalid id, no event field. Each must
// be dead-lettered once, and the valid traffic must go on.
func poisonEntries(t tier, base clusterConfig) scenario {
	each := t.n(20)
	return plan{cluster: base, roots: t.n(5_000), over: pickDur(t, 6*time.Second, 3*time.Second), mix: baseMix,
		faults: func(ctx context.Context, r *scenarioRun) error {
			rdb := goredis.NewClient(&goredis.Options{Addr: r.c.redis.Addr()})
			defer rdb.Close()
			kinds, err := poisonKinds()
			if err != nil {
				return err
			}
			for i := range each {
				for _, k := range kinds {
					id, err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: r.c.stream, Values: k.fields}).Result()
					if err != nil {
						return fmt.Errorf("write poison entry %q: %w", k.name, err)
					}
					r.mu.Lock()
					r.poison[id] = true
					r.mu.Unlock()
				}
				if err := sleep(ctx, pickDur(t, 6*time.Second, 3*time.Second)/time.Duration(each+1)); err != nil {
					return err
				}
				_ = i
			}
			r.figure("poison_written", each*len(kinds))
			return nil
		},
	}.scenario("poison", "poison entries (invalid JSON, wrong shape, oversized, invalid id, no event field) among valid traffic")
}

type poisonKind struct {
	name   string
	fields map[string]any
}

// poisonKinds returns the poison entries: each spoils one part of a valid entry.
func poisonKinds() ([]poisonKind, error) {
	ev, err := necro.NewEvent(chaosapp.EventType, chaosapp.Directive{Do: chaosapp.DoOK})
	if err != nil {
		return nil, err
	}
	good, err := ev.MarshalJSON()
	if err != nil {
		return nil, err
	}
	big := bytes.Replace(good, []byte(`"do":"ok"`), []byte(`"do":"ok","pad":"`+strings.Repeat("x", 1<<20+1)+`"`), 1)
	badID := bytes.Replace(good, []byte(ev.ID()), []byte("not-a-uuid-"+ev.ID()[:8]), 1)
	return []poisonKind{
		{"invalid JSON", map[string]any{"event": `{"id": "` + ev.ID()[:8]}},
		{"wrong shape", map[string]any{"event": `[1, 2, 3]`}},
		{"oversized", map[string]any{"event": string(big)}},
		{"invalid id", map[string]any{"event": string(badID)}},
		{"no event field", map[string]any{"data": "hello"}},
	}, nil
}

// badCredentials runs the CLI against a Redis that wants a password, with a wrong one
// and with a malformed URL that holds one: the exit codes must be the documented ones
// (4 and 2) and the password must appear nowhere in the output.
func badCredentials() scenario {
	return scenario{name: "bad-credentials", what: "wrong password and malformed URL: exit codes 4 and 2, the password printed 0 times",
		run: func(ctx context.Context, o options, _ tier, res *result) error {
			start := time.Now()
			dir := filepath.Join(o.dir, "bad-credentials")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			rs, err := redisproc.Start(redisproc.Config{Dir: dir, Password: "right-" + randomWord()})
			if err != nil {
				return err
			}
			defer rs.Kill()
			secret := "wrong-" + randomWord()
			cases := []struct {
				name string
				args []string
				want int
			}{
				{"worker, wrong password", []string{"worker", "chaos", "--redis", fmt.Sprintf("redis://:%s@%s/0", secret, rs.Addr())}, 4},
				{"inspect, wrong password", []string{"inspect", "--redis", fmt.Sprintf("redis://:%s@%s/0", secret, rs.Addr())}, 4},
				{"emit, wrong password", []string{"emit", "--redis", fmt.Sprintf("redis://:%s@%s/0", secret, rs.Addr()), "--type", "chaos.task", "--payload", "{}"}, 4},
				{"worker, malformed URL", []string{"worker", "chaos", "--redis", fmt.Sprintf("redis://:%s@%s:notaport/0", secret, "127.0.0.1")}, 2},
				{"worker, unknown scheme", []string{"worker", "chaos", "--redis", fmt.Sprintf("http://:%s@%s/0", secret, rs.Addr())}, 2},
			}
			figures := map[string]any{}
			for _, c := range cases {
				cmd := exec.CommandContext(ctx, o.bin, c.args...)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				_ = cmd.Run()
				code := cmd.ProcessState.ExitCode()
				shown := strings.Count(out.String(), secret)
				figures[c.name] = map[string]any{"exit": code, "password_printed": shown}
				if code != c.want {
					res.Problems = append(res.Problems, fmt.Sprintf("%s: exit %d, want %d (output: %s)", c.name, code, c.want, strings.TrimSpace(out.String())))
				}
				if shown != 0 {
					res.Problems = append(res.Problems, fmt.Sprintf("%s: the password is printed %d times", c.name, shown))
				}
			}
			res.Figures = figures
			res.Seconds = time.Since(start).Seconds()
			return nil
		}}
}
