package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/netproxy"
	"github.com/necrostack/necro/internal/redisproc"
)

// A clusterConfig says what one scenario runs: how many workers, how Redis keeps its
// data, and how fast the workers take over each other's entries.
type clusterConfig struct {
	Workers     int
	AppendFsync string        // "always" or "everysec"
	ClaimAfter  time.Duration // the workers' --claim-after
	// RestartDelay is how long the harness, playing the process supervisor, waits before
	// it starts a worker that died again.
	RestartDelay time.Duration
	// DrainTimeout is each worker's --drain-timeout.
	DrainTimeout time.Duration
	// Window is each worker's --window; zero keeps the Spine's default.
	Window int
}

// A cluster is one scenario's world: its own redis-server, K necro-actors worker
// processes that each reach Redis through a proxy of their own, and the harness
// restarting the workers that die, as a process supervisor would.
type cluster struct {
	cfg     clusterConfig
	bin     string // the necro-actors binary
	dir     string // everything of the run: Redis's files, ledgers, worker output
	redis   *redisproc.Server
	stream  string
	group   string
	workers []*worker
	log     func(format string, args ...any)

	mu          sync.Mutex
	autoRestart bool
	wg          sync.WaitGroup // the workers' watchers
}

// startCluster starts Redis and the workers and waits until every worker is ready.
func startCluster(ctx context.Context, bin, dir string, cfg clusterConfig, logf func(string, ...any)) (*cluster, error) {
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return nil, err
	}
	rs, err := redisproc.Start(redisproc.Config{Dir: filepath.Join(dir, "redis"), AppendOnly: true, AppendFsync: cfg.AppendFsync})
	if err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	c := &cluster{cfg: cfg, bin: bin, dir: dir, redis: rs, stream: "chaos:events", group: "chaos", log: logf, autoRestart: true}
	for i := range cfg.Workers {
		p, err := netproxy.New(rs.Addr())
		if err != nil {
			c.close()
			return nil, fmt.Errorf("start the proxy of worker %d: %w", i+1, err)
		}
		name := fmt.Sprintf("w%d", i+1)
		c.workers = append(c.workers, &worker{c: c, name: name, proxy: p, ledger: filepath.Join(dir, name+".ledger")})
	}
	for _, w := range c.workers {
		if err := w.start(nil); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// redisConfig is the configuration the harness's own clients use: Redis directly, not
// through a proxy.
func (c *cluster) redisConfig() necroredis.Config {
	return necroredis.Config{URL: c.redis.URL(), Stream: c.stream, Group: c.group}
}

// setAutoRestart turns the supervisor's restarts on or off.
func (c *cluster) setAutoRestart(on bool) {
	c.mu.Lock()
	c.autoRestart = on
	c.mu.Unlock()
}

func (c *cluster) restarting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.autoRestart
}

// waitReady waits until every worker has printed its ready line.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var notReady []string
		for _, w := range c.workers {
			if !w.isReady() {
				notReady = append(notReady, w.name)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workers %s not ready after %v (see their .stderr files in %s)", strings.Join(notReady, ", "), timeout, c.dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ensureRunning starts the workers that are down (with restarts off they stay down).
func (c *cluster) ensureRunning() error {
	for _, w := range c.workers {
		if err := w.start(nil); err != nil && !errors.Is(err, errRunning) {
			return err
		}
	}
	return nil
}

// stopAll sends SIGTERM to every worker and waits for them to exit; it returns how each
// ended. A slot with no process to stop is reported down, with its last process's end.
func (c *cluster) stopAll(timeout time.Duration) []exitRecord {
	c.setAutoRestart(false)
	var out []exitRecord
	gone := make([]<-chan struct{}, len(c.workers))
	for i, w := range c.workers {
		gone[i] = w.signal(syscall.SIGTERM)
	}
	for i, w := range c.workers {
		if gone[i] == nil {
			rec := exitRecord{Worker: w.name, Code: -1}
			if h := w.history(); len(h) > 0 {
				rec = h[len(h)-1]
			}
			rec.Down = true
			out = append(out, rec)
			continue
		}
		out = append(out, w.wait(timeout))
	}
	return out
}

// close ends everything at once: workers, proxies, Redis.
func (c *cluster) close() {
	c.setAutoRestart(false)
	for _, w := range c.workers {
		w.signal(syscall.SIGKILL)
	}
	c.wg.Wait()
	for _, w := range c.workers {
		_ = w.proxy.Close()
	}
	if c.redis != nil {
		_ = c.redis.Kill()
	}
}

// ledgers returns the paths of the workers' ledgers.
func (c *cluster) ledgers() []string {
	var out []string
	for _, w := range c.workers {
		out = append(out, w.ledger)
	}
	return out
}

// An exitRecord is how one run of a worker process ended.
type exitRecord struct {
	Worker string `json:"worker"`
	Code   int    `json:"code"`             // -1 when ended by a signal
	Signal string `json:"signal,omitempty"` // the signal that ended it
	ByUs   bool   `json:"by_harness"`       // the harness sent that signal
	Ready  bool   `json:"ready"`            // it had printed its ready line
	Term   bool   `json:"sigterm"`          // the harness had sent it SIGTERM
	// Down marks a slot that had no process when the harness came to stop it; the
	// rest of the record is how its last process ended.
	Down bool `json:"down,omitempty"`
}

func (e exitRecord) String() string {
	end := fmt.Sprintf("exit %d", e.Code)
	if e.Signal != "" {
		end = e.Signal
	}
	if e.Down {
		return fmt.Sprintf("%s: down, its last process ended by %s", e.Worker, end)
	}
	return fmt.Sprintf("%s: %s", e.Worker, end)
}

// errRunning reports a start of a slot whose process runs already: the supervisor and
// the harness both restart slots, and the first one wins.
var errRunning = errors.New("already running")

// A worker is one necro-actors worker process slot: it keeps its consumer name and
// ledger across restarts, as a pod of a stateful set does.
type worker struct {
	c      *cluster
	name   string
	ledger string
	proxy  *netproxy.Proxy

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	ready   bool
	sent    []syscall.Signal // the signals the harness sent to the current process
	exits   []exitRecord
	starts  int
	held    bool            // the supervisor leaves this slot down when its process ends
	stopped chan exitRecord // the current process's end, for wait
}

// start runs a new process for the slot; env adds to the process's environment (a
// failpoint, say) for this run only.
func (w *worker) start(env []string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil {
		return errRunning
	}
	args := []string{"worker", "chaos",
		"--redis", "redis://" + w.proxy.Addr() + "/0",
		"--stream", w.c.stream, "--group", w.c.group, "--consumer", w.name,
		"--ledger", w.ledger,
		"--claim-after", w.c.cfg.ClaimAfter.String(),
		"--drain-timeout", w.c.cfg.DrainTimeout.String(),
		"--no-random-failures",
	}
	if w.c.cfg.Window > 0 {
		args = append(args, "--window", strconv.Itoa(w.c.cfg.Window))
	}
	cmd := exec.Command(w.c.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	dieWithParent(cmd)
	errFile, err := os.OpenFile(filepath.Join(w.c.dir, w.name+".stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer errFile.Close() // the child has its own copy
	cmd.Stderr = errFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start worker %s: %w", w.name, err)
	}
	w.cmd, w.ready, w.sent = cmd, false, nil
	w.done = make(chan struct{})
	w.stopped = make(chan exitRecord, 1)
	w.starts++
	w.c.wg.Add(1)
	go w.watch(cmd, out, w.done, w.stopped)
	return nil
}

// watch reads the process's stdout (the ready line), waits for its end, records it,
// and restarts the slot when the supervisor is on and the harness did not stop it.
func (w *worker) watch(cmd *exec.Cmd, out io.Reader, done chan struct{}, stopped chan exitRecord) {
	defer w.c.wg.Done()
	stdout, _ := os.OpenFile(filepath.Join(w.c.dir, w.name+".stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if stdout != nil {
			_, _ = stdout.Write(append(line, '\n'))
		}
		var m struct{ Event string }
		if json.Unmarshal(line, &m) == nil && m.Event == "ready" {
			w.mu.Lock()
			w.ready = true
			w.mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, out)
	err := cmd.Wait()
	if stdout != nil {
		_ = stdout.Close()
	}
	w.mu.Lock()
	rec := exitRecord{Worker: w.name, Code: cmd.ProcessState.ExitCode(), Ready: w.ready,
		Term: slices.Contains(w.sent, syscall.SIGTERM)}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		rec.Signal = ws.Signal().String()
		rec.ByUs = slices.Contains(w.sent, ws.Signal())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		rec.Signal = err.Error()
	}
	w.exits = append(w.exits, rec)
	w.cmd = nil
	w.ready = false
	w.mu.Unlock()
	stopped <- rec
	close(done)
	w.c.log("worker %s ended: %s", w.name, rec)

	if !w.restartable() {
		return
	}
	time.Sleep(w.c.cfg.RestartDelay)
	if !w.restartable() {
		return
	}
	if err := w.start(nil); err != nil && !errors.Is(err, errRunning) {
		w.c.log("restart worker %s: %v", w.name, err)
	}
}

// hold keeps the supervisor from restarting the slot (on) or lets it again (off).
func (w *worker) hold(on bool) {
	w.mu.Lock()
	w.held = on
	w.mu.Unlock()
}

func (w *worker) restartable() bool {
	w.mu.Lock()
	held := w.held
	w.mu.Unlock()
	return !held && w.c.restarting()
}

func (w *worker) isReady() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd != nil && w.ready
}

// signal sends sig to the current process, if there is one. It returns a channel
// closed once that process has ended and been recorded, or nil when it sent nothing.
func (w *worker) signal(sig syscall.Signal) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd == nil || w.cmd.Process.Signal(sig) != nil {
		return nil
	}
	w.sent = append(w.sent, sig)
	return w.done
}

// wait waits for the current process to end, up to timeout, and returns how it ended;
// a process still running then is killed and reported as such.
func (w *worker) wait(timeout time.Duration) exitRecord {
	w.mu.Lock()
	stopped := w.stopped
	running := w.cmd != nil
	var last exitRecord
	if len(w.exits) > 0 {
		last = w.exits[len(w.exits)-1]
	}
	w.mu.Unlock()
	if !running || stopped == nil {
		return last
	}
	select {
	case rec := <-stopped:
		return rec
	case <-time.After(timeout):
		w.signal(syscall.SIGKILL)
		rec := <-stopped
		rec.Signal += fmt.Sprintf(" (still running %v after SIGTERM)", timeout)
		return rec
	}
}

// history returns how each of the slot's processes ended so far.
func (w *worker) history() []exitRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.exits)
}
