package spine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/actors"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// run is one Run or Serve: a fetcher goroutine, the coordinator (on the actor host), a
// committer goroutine, and the accounting that ties them: credits (free room in the
// window) and the number of deliveries in flight.
type run struct {
	s       *Spine
	cfg     Config
	b       backend.Backend
	log     *slog.Logger
	tel     *telemetry.Recorder
	stats   *counters
	health  *healthBox
	bounded bool

	ctx    context.Context
	cancel context.CancelCauseFunc
	// pullCtx is canceled by a graceful stop, to wake a Pull waiting on an empty backend.
	pullCtx    context.Context
	pullCancel context.CancelFunc
	stopping   atomic.Bool
	// failed is set when settling failed fatally (EnqueueFail): from then on nothing is
	// settled any more, every delivery left is given back.
	failed atomic.Bool

	host  *actors.Host[message] // runs coord, the Spine actor, and the organ actors
	coord *coordinator

	// roster says the store is shared with other workers (a backend.Roster); routes is
	// what the last reading of its roster says they serve.
	roster  bool
	routes  atomic.Pointer[routing]
	joining atomic.Bool // waiting for the other workers to see this one (see announce)

	free     atomic.Int64 // room in the window
	inflight atomic.Int64 // deliveries pulled and not yet settled
	settles  atomic.Int64 // settles so far
	settled  signal       // fires after every settle
	commits  commitQueue

	finished chan struct{} // closed when execute returns
}

func newRun(s *Spine, ctx context.Context, bounded bool) *run {
	r := &run{s: s, cfg: s.cfg, b: s.b, log: s.cfg.Logger, tel: s.cfg.Telemetry, stats: s.stats, health: s.health, bounded: bounded,
		finished: make(chan struct{})}
	_, r.roster = s.b.(backend.Roster)
	r.joining.Store(r.roster) // until it has announced itself; see announce
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	r.pullCtx, r.pullCancel = context.WithCancel(r.ctx)
	r.free.Store(int64(s.cfg.Window))
	r.commits.wake = make(chan struct{}, 1)
	return r
}

func (r *run) stop() {
	r.stopping.Store(true)
	r.pullCancel()
}

// errStoppedNow is the cause of an immediate stop asked for by Shutdown: a stop, not
// a failure of the run.
var errStoppedNow = errors.New("spine: stopped at once")

// abortNow turns a graceful stop into an immediate one.
func (r *run) abortNow() { r.cancel(errStoppedNow) }

func (r *run) execute() error {
	defer close(r.finished)
	defer r.cancel(nil)
	defer r.pullCancel()
	r.coord = newCoordinator(r)
	r.host = actors.Start(r.ctx, r.s.mounts, actors.Config{
		HandlerTimeout: r.cfg.HandlerTimeout,
		Timeouts:       r.cfg.timeouts(),
		AbandonAfter:   r.cfg.AbandonAfter,
		Logger:         r.log,
		Telemetry:      r.tel,
		Destination:    r.s.dest,
	}, r.coord)

	var wg sync.WaitGroup
	ro, isRoster := r.b.(backend.Roster)
	if isRoster {
		r.announce(ro)
		wg.Go(func() { r.watchRoster(ro) })
	}
	wg.Go(r.commitLoop)
	fetchErr := make(chan error, 1)
	wg.Go(func() { fetchErr <- r.fetch() })

	err := <-fetchErr
	r.pullCancel() // the fetcher is done: so is the roster's watcher
	if isRoster {
		r.withdraw(ro)
	}
	if r.ctx.Err() == nil {
		r.waitSettled() // graceful: let what is in flight finish
	}
	if r.ctx.Err() != nil {
		// Immediate stop: what is still in flight goes back to the backend.
		done := make(chan struct{})
		r.host.Send(abortMsg{done: done})
		<-done
	}
	r.commits.close()
	wg.Wait()
	r.host.Close()

	if err == nil {
		err = context.Cause(r.ctx)
		if errors.Is(err, context.Canceled) || errors.Is(err, errStoppedNow) {
			err = nil // a canceled ctx or Shutdown is a request to stop, not a failure
		}
	}
	return err
}

// waitSettled waits until nothing is in flight or the run is aborted.
func (r *run) waitSettled() {
	for r.inflight.Load() > 0 {
		ch := r.settled.wait()
		if r.inflight.Load() == 0 {
			return
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return
		}
	}
}

// fetch pulls deliveries into the window until the work is done, the budget is spent,
// the run is stopped, or the backend is given up on.
func (r *run) fetch() error {
	f := fetcher{r: r, steps: int64(limit(r.cfg.MaxSteps))}
	f.idler, _ = r.b.(backend.Idler)
	for r.pullCtx.Err() == nil {
		n := r.acquire()
		if n == 0 {
			continue
		}
		if over, err := f.round(n); over {
			return err
		}
	}
	return nil
}

// afterInflightLook, when a test sets it, runs in the fetcher right after it looked at
// what is in flight, so that a test can make the last delivery settle exactly there.
var afterInflightLook func(*run)

// A fetcher is the state of the fetch loop, which only the fetcher goroutine touches.
type fetcher struct {
	r        *run
	steps    int64         // MaxSteps, the budget of a bounded run
	idler    backend.Idler // the backend, when it can tell that it is idle
	failures int           // pulls failed in a row; more than zero means the circuit is open
}

// round pulls up to n deliveries, n being the credits it took from the window, and hands
// them to the Spine actor. It reports whether fetching is over, and with what error.
func (f *fetcher) round(n int64) (bool, error) {
	r := f.r
	if r.bounded {
		left := f.steps - r.stats.dispatched.Load()
		if left <= 0 {
			r.release(n)
			return true, r.budgetSpent(f.idler)
		}
		n = min(n, left)
	}
	// Read settles before inflight: the wait for a settle (see nothingPulled) returns at
	// once for any settle this read misses. Read the other way round, a settle between
	// the two reads would leave the fetcher waiting, with nothing in flight, for a settle
	// that never comes.
	settles := r.settles.Load()
	idle := r.inflight.Load() == 0
	if afterInflightLook != nil {
		afterInflightLook(r)
	}
	pullCtx, cancel, done := f.pullContext(idle)
	if done {
		r.release(n)
		return true, nil
	}
	var pullStart time.Time
	if r.tel.Tracing() {
		pullStart = time.Now()
	}
	ds, err := r.b.Pull(pullCtx, int(n))
	cancel()
	r.release(n - int64(len(ds)))
	if len(ds) > 0 {
		f.handOver(ds, pullStart)
		return false, nil
	}
	return f.nothingPulled(err, idle, settles)
}

// pullContext says how long the next pull may wait. Serve waits until something comes.
// A bounded run with deliveries in flight takes only what is ready: more comes when
// something settles. With nothing in flight it waits, up to IdleTimeout when the
// backend cannot tell that it is idle; done reports that the backend says it is idle,
// so the work is done.
func (f *fetcher) pullContext(idle bool) (ctx context.Context, cancel context.CancelFunc, done bool) {
	r := f.r
	noCancel := func() {}
	switch {
	case !r.bounded:
		return r.pullCtx, noCancel, false
	case !idle:
		return doneCtx, noCancel, false
	case f.idler == nil:
		ctx, cancel = context.WithTimeout(r.pullCtx, r.cfg.IdleTimeout)
		return ctx, cancel, false
	case f.idler.Idle():
		return nil, nil, true
	}
	return r.pullCtx, noCancel, false
}

// handOver sends a pulled batch to the Spine actor; from now on it is in flight.
func (f *fetcher) handOver(ds []backend.Delivery, pullStart time.Time) {
	r := f.r
	if r.tel.Tracing() {
		r.tel.Receive(r.ctx, &r.s.dest, len(ds), func(i int) necro.Event { return ds[i].Event }, pullStart)
	}
	f.closeCircuit()
	r.stats.dispatched.Add(int64(len(ds)))
	r.inflight.Add(int64(len(ds)))
	r.host.Send(fetched{ds})
}

// nothingPulled decides what follows a pull that brought nothing, and reports, as round
// does, whether fetching is over.
func (f *fetcher) nothingPulled(err error, idle bool, settles int64) (bool, error) {
	r := f.r
	switch {
	case r.pullCtx.Err() != nil:
		return true, nil
	case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		return f.pullFailed(err)
	}
	f.closeCircuit() // the backend answered
	if r.bounded && idle {
		// Nothing in flight and nothing came. An Idler is asked again next round;
		// without one, IdleTimeout of silence means that the work is done.
		return f.idler == nil, nil
	}
	if r.bounded {
		r.waitSettleAfter(settles) // something in flight will settle and may enqueue children
	}
	return false, nil
}

// pullFailed opens the circuit, or keeps it open, and waits BackendBackoff before the
// next pull; a bounded run gives up after MaxConsecutiveBackendFailures failures in a
// row. It reports, as round does, whether fetching is over.
func (f *fetcher) pullFailed(err error) (bool, error) {
	r := f.r
	f.failures++
	r.health.set(problemCircuitOpen, true)
	r.stats.backendErrors.Add(1)
	r.log.WarnContext(r.ctx, "pull failed", slog.Int("consecutive_failures", f.failures), slog.Any("err", err))
	if r.bounded && f.failures >= r.cfg.MaxConsecutiveBackendFailures {
		return true, &BackendUnavailableError{FailureCount: f.failures, LastErr: err}
	}
	delay := r.cfg.BackendBackoff.Delay(f.failures, uint64(f.failures))
	return !sleep(r.pullCtx, delay), nil
}

// closeCircuit closes the circuit after the backend answered again.
func (f *fetcher) closeCircuit() {
	if f.failures > 0 {
		f.failures = 0
		f.r.health.set(problemCircuitOpen, false)
		f.r.log.InfoContext(f.r.ctx, "backend answers again; circuit closed")
	}
}

// budgetSpent ends a bounded run that dispatched MaxSteps events: once the window is
// settled, it looks for one more event and, if there is one, gives it back.
func (r *run) budgetSpent(idler backend.Idler) error {
	r.waitSettled()
	if r.ctx.Err() != nil {
		return nil
	}
	ds, err := r.b.Pull(doneCtx, 1)
	if len(ds) > 0 {
		rel := make([]backend.Settlement, len(ds))
		for i, d := range ds {
			rel[i] = backend.Settlement{Delivery: d, Outcome: backend.Release}
		}
		if err := r.b.Settle(context.WithoutCancel(r.ctx), rel...); err != nil {
			r.stats.backendErrors.Add(1)
			r.log.ErrorContext(r.ctx, "release after step budget failed; the event comes back after redelivery", slog.Any("err", err))
		}
		return necro.ErrStepBudgetExceeded
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		r.stats.backendErrors.Add(1)
		return necro.ErrStepBudgetExceeded // cannot tell whether more waits; say the budget ended the run
	}
	if idler != nil && !idler.Idle() {
		return necro.ErrStepBudgetExceeded // retries or redeliveries are still scheduled
	}
	return nil
}

// acquire takes up to a window's worth of free credits, waiting for at least one.
// It returns 0 when the run is stopping.
func (r *run) acquire() int64 {
	for {
		if f := r.free.Load(); f > 0 {
			if r.free.CompareAndSwap(f, 0) {
				return f
			}
			continue
		}
		ch := r.settled.wait()
		if r.free.Load() > 0 {
			continue
		}
		select {
		case <-ch:
		case <-r.pullCtx.Done():
			return 0
		}
	}
}

func (r *run) release(n int64) {
	if n > 0 {
		r.free.Add(n)
	}
}

// waitSettleAfter waits until a settle has happened since the settle count was n.
func (r *run) waitSettleAfter(n int64) {
	for r.settles.Load() == n {
		ch := r.settled.wait()
		if r.settles.Load() != n {
			return
		}
		select {
		case <-ch:
		case <-r.pullCtx.Done():
			return
		}
	}
}

// commitLoop applies the settlements the coordinator commits, in order. Deliveries
// given back (Release) come only from an immediate stop; they are collected and given
// back at the end, newest first, so that a store which puts them first in line keeps
// their order.
func (r *run) commitLoop() {
	var giveBack []backend.Delivery
	for {
		taken, ok := r.commits.take()
		if !ok {
			break
		}
		batch := taken
		for len(batch) > 0 {
			if r.failed.Load() || batch[0].Outcome == backend.Release {
				giveBack = append(giveBack, batch[0].Delivery)
				batch = batch[1:]
				continue
			}
			n := 1
			for n < len(batch) && n < settleChunk && batch[n].Outcome != backend.Release {
				n++
			}
			if given := r.apply(batch[:n]); given != nil {
				giveBack = append(giveBack, given...)
			}
			batch = batch[n:]
		}
		r.commits.recycle(taken)
	}
	ctx := context.WithoutCancel(r.ctx)
	for i := len(giveBack) - 1; i >= 0; i-- {
		if err := r.b.Settle(ctx, backend.Settlement{Delivery: giveBack[i], Outcome: backend.Release}); err != nil {
			r.stats.backendErrors.Add(1)
			r.log.ErrorContext(r.ctx, "give back failed; the event comes back after redelivery",
				slog.Any("event", giveBack[i].Event), slog.Any("err", err))
		}
		r.done(1)
	}
}

// settleChunk bounds the settlements one Settle call carries: the window's room comes
// back as each call returns, so the fetcher can pull again while later settlements are
// still being written, instead of waiting for a whole window to settle.
const settleChunk = 256

// apply settles a batch in order and handles a refusal by the EnqueueFailure mode. It
// returns the deliveries to give back after a fatal failure, oldest first.
func (r *run) apply(batch []backend.Settlement) []backend.Delivery {
	ctx := context.WithoutCancel(r.ctx) // settling in-flight work must outlive a stop
	for len(batch) > 0 {
		if r.failed.Load() {
			var rest []backend.Delivery
			for _, st := range batch {
				rest = append(rest, st.Delivery)
			}
			return rest
		}
		err := r.b.Settle(ctx, batch...)
		if err == nil {
			r.settledOK(batch)
			break
		}
		applied := 0
		var se *backend.SettleError
		if errors.As(err, &se) {
			applied = se.Applied
		}
		r.settledOK(batch[:applied])
		if !r.refused(ctx, batch[applied], err) {
			rest := []backend.Delivery{batch[applied].Delivery}
			for _, st := range batch[applied+1:] {
				rest = append(rest, st.Delivery)
			}
			return rest
		}
		batch = batch[applied+1:]
	}
	return nil
}

// settledOK accounts for settlements the backend applied.
func (r *run) settledOK(batch []backend.Settlement) {
	if len(batch) == 0 {
		return
	}
	var emitted, dls, retries, processed int64
	for i := range batch {
		st := &batch[i]
		emitted += int64(len(st.Children))
		retries += int64(len(st.Retries))
		dls += int64(len(st.DeadLetters))
		if st.Outcome != backend.Release {
			processed++
		}
		for _, dl := range st.DeadLetters {
			r.log.WarnContext(telemetry.WithFlow(r.ctx, telemetry.Flow{Event: dl.Event, Organ: dl.Organ}), "event dead-lettered", slog.Any("event", dl.Event), slog.String("organ", dl.Organ),
				slog.Int("attempts", dl.Attempts), slog.String("reason", dl.Reason), slog.String("err", dl.Error))
		}
	}
	r.stats.emitted.Add(emitted)
	r.stats.retried.Add(retries)
	r.stats.deadLettered.Add(dls)
	r.stats.processed.Add(processed)
	r.done(len(batch))
}

// done gives the window room back for n settled deliveries. inflight goes down before
// settles goes up, the opposite of the order in which the fetcher reads them (see
// fetcher.round), so that the fetcher never sees a settle counted and still in flight.
func (r *run) done(n int) {
	r.inflight.Add(-int64(n))
	r.free.Add(int64(n))
	r.settles.Add(1)
	r.settled.notify()
}

// refused handles one settlement the backend refused. It returns false when the
// failure is fatal: the run ends and the delivery must be given back.
func (r *run) refused(ctx context.Context, st backend.Settlement, err error) bool {
	if errors.Is(err, backend.ErrUnknownDelivery) {
		// The store no longer knows the delivery (it was redelivered elsewhere); the
		// other holder will settle it. Count it: this is an ack error.
		r.stats.ackErrors.Add(1)
		r.log.WarnContext(r.ctx, "settle rejected: unknown delivery", slog.Any("event", st.Delivery.Event), slog.Any("err", err))
		r.done(1)
		return true
	}
	if !errors.Is(err, backend.ErrQueueFull) {
		r.stats.backendErrors.Add(1)
	}
	mode := r.cfg.EnqueueFailure
	r.log.WarnContext(r.ctx, "enqueue failed", slog.Any("event", st.Delivery.Event), slog.Int("children", len(st.Children)),
		slog.String("failure_mode", mode.String()), slog.Any("err", err))
	if mode == EnqueueRetry {
		b := r.cfg.EnqueueBackoff
		for attempt := 1; attempt <= r.cfg.EnqueueRetries; attempt++ {
			sleep(r.ctx, b.Delay(attempt, supervision.Seed(st.Delivery.Event.ID())))
			if err = r.b.Settle(ctx, st); err == nil {
				r.settledOK([]backend.Settlement{st})
				return true
			}
			r.log.WarnContext(r.ctx, "enqueue retry failed", slog.Int("attempt", attempt), slog.String("failure_mode", mode.String()), slog.Any("err", err))
		}
	}
	if mode == EnqueueStore && r.storeChildren(ctx, st, err) {
		return true
	}
	// Fail: the run ends; the parent goes back unacked, so nothing is lost.
	for _, c := range st.Children {
		r.stats.enqueueFailure(c.Type())
	}
	first := st.Delivery.Event
	if len(st.Children) > 0 {
		first = st.Children[0]
	}
	r.failed.Store(true)
	r.cancel(&EnqueueError{Event: first, Err: err})
	return false
}

// storeChildren is EnqueueStore: enqueue the children one by one, dead-letter those the
// backend still refuses, and settle the parent without them. It reports success.
func (r *run) storeChildren(ctx context.Context, st backend.Settlement, cause error) bool {
	rest := st
	rest.Children = nil
	rest.DeadLetters = append([]backend.DeadLetter(nil), st.DeadLetters...)
	var emitted int64
	for _, c := range st.Children {
		if err := r.b.Enqueue(ctx, c); err != nil {
			r.stats.enqueueFailure(c.Type())
			rest.DeadLetters = append(rest.DeadLetters, backend.DeadLetter{Event: c, Attempts: 1, Error: err.Error(),
				Reason: "enqueue failed", At: time.Now().UTC(), Receipt: st.Delivery.Receipt})
			continue
		}
		emitted++
	}
	if err := r.b.Settle(ctx, rest); err != nil {
		r.log.ErrorContext(r.ctx, "storing refused children failed", slog.Any("event", st.Delivery.Event), slog.Any("err", err), slog.Any("cause", cause))
		return false
	}
	r.stats.emitted.Add(emitted)
	r.settledOK([]backend.Settlement{rest})
	return true
}

// commitQueue hands settlements from the coordinator to the committer without ever
// blocking the coordinator; the window bounds its length.
type commitQueue struct {
	mu     sync.Mutex
	items  []backend.Settlement
	spare  []backend.Settlement
	closed bool
	wake   chan struct{} // capacity 1: a pending wake-up is enough
}

func (q *commitQueue) push(batch []backend.Settlement) {
	q.mu.Lock()
	q.items = append(q.items, batch...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *commitQueue) recycle(b []backend.Settlement) {
	clear(b) // drop the events, so that the buffer keeps nothing alive
	q.mu.Lock()
	if q.spare == nil {
		q.spare = b[:0]
	}
	q.mu.Unlock()
}

func (q *commitQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take waits for settlements and returns them all. The committer hands the slice back
// with recycle once applied, so the two buffers alternate instead of growing anew.
func (q *commitQueue) take() ([]backend.Settlement, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			b := q.items
			q.items, q.spare = q.spare[:0], nil
			q.mu.Unlock()
			return b, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.wake
	}
}

// signal wakes every goroutine waiting on it, each time notify is called.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// doneCtx is already done: a Pull with it returns only what is ready.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// sleep waits d or until ctx is done, and reports whether the whole d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
