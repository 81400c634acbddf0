// Command necro-chaos is necro's fault-injection harness. It treats the runtime as a
// black box: for each scenario it starts its own redis-server, K `necro-actors worker`
// processes running the chaos test app (internal/chaosapp), whose organs obey
// directives carried in each event's payload, an in-process TCP proxy in front of each
// worker's Redis connection, and a producer. It injects the scenario's faults — killed
// workers, a killed Redis, stalled or cut networks, panicking, hanging, failing and
// exiting handlers, emit loops, poison entries — then heals everything, drains and
// checks what the workers' ledgers and Redis say:
//
//	lost          (event, organ) pairs neither handled nor dead-lettered    must be 0
//	unexpected    handlings and dead letters no directive demands           must be 0
//	duplicated    handlings beyond the first (at-least-once delivery)       reported
//	dead-lettered the dead letters the directives demand, no more, no fewer must match
//	pending left  entries pending, unread or delayed once drained           must be 0
//
// Usage:
//
//	necro-chaos [--tier short|full] [--scenario a,b] [--bin necro-actors] [--race]
//	            [--json FILE] [--markdown FILE] [--dir DIR] [--keep] [--seed N] [-v]
//
// It exits 0 when every scenario passed, 1 when one failed, 2 on a usage error.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

const (
	sigkill = syscall.SIGKILL
	sigterm = syscall.SIGTERM
)

// options are the harness's settings, shared by every scenario.
type options struct {
	bin          string // the necro-actors binary the workers run
	dir          string // where each scenario keeps its files
	seed         uint64
	drainTimeout time.Duration
	verbose      io.Writer // progress lines; nil for none
	mu           *sync.Mutex
}

// logf returns the progress logger of scenario name.
func (o options) logf(name string) func(string, ...any) {
	return func(format string, args ...any) {
		if o.verbose == nil {
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		fmt.Fprintf(o.verbose, "%s %-20s %s\n", time.Now().Format("15:04:05.000"), name, fmt.Sprintf(format, args...))
	}
}

func main() {
	// go-redis logs dial failures through a logger of its own; while Redis is killed on
	// purpose they are expected, and the checks report what matters.
	goredis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("necro-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tierName := fs.String("tier", "full", "`tier`: short (CI, a few minutes) or full (the issue's sizes and durations)")
	only := fs.String("scenario", "", "run only these scenarios (comma-separated `names`); -list shows them")
	list := fs.Bool("list", false, "list the scenarios and exit")
	bin := fs.String("bin", "", "the necro-actors `binary` the workers run; empty builds it from this module (a binary of your own needs -tags necro_failpoint for crash-emit-settle)")
	race := fs.Bool("race", false, "build necro-actors with the race detector")
	jsonOut := fs.String("json", "", "write the results as JSON to this `file`")
	mdOut := fs.String("markdown", "", "write the results as a Markdown table to this `file`")
	dir := fs.String("dir", "", "keep each scenario's files (Redis data, ledgers, worker output) under this `directory`; default a temporary one, removed after a passing run")
	keep := fs.Bool("keep", false, "keep the temporary directory even when every scenario passed")
	seed := fs.Uint64("seed", 1, "seed of the directives mix and of the faults' choices")
	drain := fs.Duration("drain-timeout", 3*time.Minute, "how long the drain after the faults may take before the run is judged as it is")
	verbose := fs.Bool("v", false, "print progress on stderr")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	var t tier
	switch *tierName {
	case "short":
		t = shortTier
	case "full":
		t = fullTier
	default:
		fmt.Fprintf(stderr, "necro-chaos: --tier %q: want short or full\n", *tierName)
		return 2
	}
	all := scenarios(t)
	if *list {
		for _, s := range all {
			fmt.Fprintf(stdout, "%-20s %s\n", s.name, s.what)
		}
		return 0
	}
	chosen, err := choose(all, *only)
	if err != nil {
		fmt.Fprintf(stderr, "necro-chaos: %v\n", err)
		return 2
	}

	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("", "necro-chaos-"); err != nil {
			fmt.Fprintf(stderr, "necro-chaos: %v\n", err)
			return 1
		}
	}
	o := options{bin: *bin, dir: work, seed: *seed, drainTimeout: *drain, mu: new(sync.Mutex)}
	if *verbose {
		o.verbose = stderr
	}
	if o.bin == "" {
		if o.bin, err = buildWorker(ctx, work, *race); err != nil {
			fmt.Fprintf(stderr, "necro-chaos: %v\n", err)
			return 1
		}
	}

	results := runAll(ctx, o, t, chosen)
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
		}
	}
	printTable(stdout, results)
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, results); err != nil {
			fmt.Fprintf(stderr, "necro-chaos: %v\n", err)
			return 1
		}
	}
	if *mdOut != "" {
		if err := os.WriteFile(*mdOut, []byte(markdown(results)), 0o644); err != nil {
			fmt.Fprintf(stderr, "necro-chaos: %v\n", err)
			return 1
		}
	}
	if failed > 0 || *keep || *dir != "" {
		fmt.Fprintf(stderr, "necro-chaos: the runs' files are in %s\n", work)
	} else {
		_ = os.RemoveAll(work)
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "necro-chaos: %d of %d scenarios failed\n", failed, len(results))
		return 1
	}
	return 0
}

// choose returns the scenarios named in only (all when empty), in their usual order.
func choose(all []scenario, only string) ([]scenario, error) {
	if only == "" {
		return all, nil
	}
	var out []scenario
	for name := range strings.SplitSeq(only, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(all, func(s scenario) bool { return s.name == name })
		if i < 0 {
			var names []string
			for _, s := range all {
				names = append(names, s.name)
			}
			return nil, fmt.Errorf("unknown scenario %q; the scenarios are: %s", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// runAll runs the scenarios one after another; a scenario that cannot run is a failed
// one, and the others still run.
func runAll(ctx context.Context, o options, t tier, chosen []scenario) []result {
	var out []result
	for _, s := range chosen {
		res := result{Scenario: s.name, Tier: t.name}
		o.logf(s.name)("start: %s", s.what)
		if err := s.run(ctx, o, t, &res); err != nil {
			res.Problems = append(res.Problems, "did not run to the end: "+err.Error())
		}
		res.Passed = len(res.Problems) == 0
		o.logf(s.name)("passed=%v %s", res.Passed, strings.Join(res.Problems, "; "))
		out = append(out, res)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

// buildWorker builds necro-actors from the module the harness belongs to, with the
// necro_failpoint tag: the crash-emit-settle scenario arms the Redis store's crash points,
// which production builds do not have.
func buildWorker(ctx context.Context, dir string, race bool) (string, error) {
	out := filepath.Join(dir, "necro-actors")
	args := []string{"build", "-tags", "necro_failpoint", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/necrostack/necro/cmd/necro-actors")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build necro-actors: %v: %s", err, b)
	}
	return out, nil
}

// moduleDir returns the directory of this source file's module when the harness runs
// from a checkout (go run, go test), and the working directory otherwise.
func moduleDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	d := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(d, "go.mod")); err != nil {
		return ""
	}
	return d
}

func writeJSON(path string, results []result) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// printTable prints one line per scenario with the checks' figures.
func printTable(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tresult\troots\tlost\tunexpected\tduplicated\tdead-lettered\tpending\tkills\tcrashes\tseconds")
	for _, r := range results {
		status := "PASS"
		if !r.Passed {
			status = "FAIL"
		}
		if v := r.Verdict; v != nil {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d/%d\t%d\t%d\t%d\t%.1f\n", r.Scenario, status, v.Roots, v.Lost, v.Unexpected,
				v.Duplicated, v.DeadLettered, v.DeadWanted, v.Pending+v.Lag+v.Delayed, r.Kills, r.Crashes, r.Seconds)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%.1f\n", r.Scenario, status, r.Seconds)
		}
	}
	_ = tw.Flush()
	for _, r := range results {
		for _, p := range r.Problems {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.Scenario, p)
		}
	}
}

// markdown renders the results as the table RELIABILITY.md holds.
func markdown(results []result) string {
	var b strings.Builder
	b.WriteString("| scenario | result | roots | lost | unexpected | duplicated | dead-lettered / demanded | pending left | worker kills | crashes | seconds | other figures |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		status := "pass"
		if !r.Passed {
			status = "**FAIL**"
		}
		figs := figuresText(r)
		if v := r.Verdict; v != nil {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d / %d | %d | %d | %d | %.1f | %s |\n", r.Scenario, status, v.Roots, v.Lost,
				v.Unexpected, v.Duplicated, v.DeadLettered, v.DeadWanted, v.Pending+v.Lag+v.Delayed, r.Kills, r.Crashes, r.Seconds, figs)
		} else {
			fmt.Fprintf(&b, "| %s | %s | | | | | | | | | %.1f | %s |\n", r.Scenario, status, r.Seconds, figs)
		}
	}
	return b.String()
}

func figuresText(r result) string {
	var parts []string
	keys := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b, _ := json.Marshal(r.Figures[k])
		parts = append(parts, fmt.Sprintf("%s: %s", k, b))
	}
	if v := r.Verdict; v != nil && v.Poison > 0 {
		parts = append(parts, fmt.Sprintf("poison dead-lettered: %d", v.Poison))
	}
	if r.Restarts > 0 {
		parts = append(parts, fmt.Sprintf("restarts: %d", r.Restarts))
	}
	if r.ProducerErrs > 0 {
		parts = append(parts, fmt.Sprintf("producer retries: %d", r.ProducerErrs))
	}
	parts = append(parts, fmt.Sprintf("drain %.1fs", r.DrainSeconds))
	return strings.ReplaceAll(strings.Join(parts, "; "), "|", "\\|")
}

// randomWord returns 16 random hex digits.
func randomWord() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
