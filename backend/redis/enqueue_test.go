package redis_test

// Large Enqueue calls: written in chunks that each hold Redis briefly, and a chunk
// whose reply is lost is neither doubled nor reported as a failure.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/netproxy"
	"github.com/necrostack/necro/internal/redistest"
)

// streamEventIDs returns the event ids of a stream's entries, oldest first.
func streamEventIDs(t *testing.T, rdb *goredis.Client, stream string) []string {
	t.Helper()
	msgs, err := rdb.XRange(t.Context(), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s = %v", stream, err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		raw, _ := m.Values["event"].(string)
		ev, err := necro.DecodeEvent([]byte(raw))
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		ids[i] = ev.ID()
	}
	return ids
}

func eventIDs(evs []necro.Event) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID()
	}
	return ids
}

// An Enqueue of many events is written in chunks: no script carries more than
// EnqueueChunkEvents of them, so none holds Redis for long, and the events arrive
// whole and in order. The longest script is logged, not asserted.
func TestEnqueueLargeIsChunked(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{Args: []string{"--slowlog-log-slower-than", "0", "--slowlog-max-len", "100000"}})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{TrimInterval: necroredis.Off})
	evs := seedMany(t, "BULK", 20_000)
	if err := rdb.SlowLogReset(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue(%d events) = %v", len(evs), err)
	}
	took := time.Since(start)
	logs, err := rdb.SlowLogGet(t.Context(), -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var scripts, most int
	var longest time.Duration
	for _, l := range logs {
		if len(l.Args) == 0 || !strings.EqualFold(l.Args[0], "evalsha") && !strings.EqualFold(l.Args[0], "eval") {
			continue
		}
		scripts++
		longest = max(longest, l.Duration)
		argc := len(l.Args)
		// Redis keeps 32 arguments of a command; the last then says how many more.
		if last := l.Args[len(l.Args)-1]; strings.HasPrefix(last, "... (") {
			more, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(last, "... ("), " more arguments)"))
			argc += more - 1
		}
		most = max(most, argc)
	}
	// Each event is two arguments (event, meta); a script has a dozen others at most.
	if limit := 2*necroredis.EnqueueChunkEvents + 12; most > limit {
		t.Errorf("a script carried %d arguments, about %d events; want at most %d events per script", most, most/2, necroredis.EnqueueChunkEvents)
	}
	t.Logf("%d events in %v: %d scripts, the longest %v", len(evs), took, scripts, longest)
	if got := streamEventIDs(t, rdb, b.Config().Stream); !slices.Equal(got, eventIDs(evs)) {
		t.Errorf("the stream holds %d events, want the %d enqueued, in order", len(got), len(evs))
	}
	if m := b.Metrics(); m.Enqueued != int64(len(evs)) {
		t.Errorf("Metrics().Enqueued = %d, want %d", m.Enqueued, len(evs))
	}
}

// blockRedis makes the server busy for d (DEBUG SLEEP, from a connection of its own)
// and returns once it is: a PING then gets no answer. The function it returns waits
// until the server is back.
func blockRedis(t *testing.T, srv *redistest.Server, d time.Duration) (wait func()) {
	t.Helper()
	blocker := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ReadTimeout: d + 5*time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = blocker.Close() }) // a test client: nothing to report
	done := make(chan error, 1)
	go func() { done <- blocker.Do(context.Background(), "DEBUG", "SLEEP", d.Seconds()).Err() }()
	var once sync.Once
	wait = func() {
		once.Do(func() {
			if err := <-done; err != nil {
				t.Errorf("DEBUG SLEEP = %v", err)
			}
		})
	}
	t.Cleanup(wait)
	probe := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ReadTimeout: 20 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	seedEventually(t, 5*time.Second, "Redis still answered PING after DEBUG SLEEP", func() bool {
		return probe.Ping(t.Context()).Err() != nil
	})
	return wait
}

// A chunk whose reply is lost (Redis busy past the client's read timeout) is sent
// again; the retry finds that the first attempt, or a stale copy of it, already
// applied it. Enqueue then reports success, and every event is in the stream once.
func TestEnqueueLostReplyIsNotAFailure(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{Args: []string{"--enable-debug-command", "yes"}})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{URL: srv.URL() + "?read_timeout=200ms", TrimInterval: necroredis.Off})
	evs := seedMany(t, "LOST", 3*necroredis.EnqueueChunkEvents)
	// One event first, so that Redis knows the script: an attempt whose reply is lost
	// then runs once Redis is back, rather than failing for an unknown script.
	seedEnqueue(t, b, evs[0])
	wait := blockRedis(t, srv, 1500*time.Millisecond)
	err := b.Enqueue(t.Context(), evs[1:]...)
	wait()
	// An attempt whose reply was lost still runs once Redis is back; a PING behind it
	// makes sure it has.
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	got := streamEventIDs(t, rdb, b.Config().Stream)
	if err != nil {
		t.Fatalf("Enqueue = %v, and the stream holds %d of the %d events", err, len(got), len(evs))
	}
	if !slices.Equal(got, eventIDs(evs)) {
		t.Errorf("the stream holds %d events, want the %d enqueued, each once, in order", len(got), len(evs))
	}
	if m := b.Metrics(); m.EnqueueRetries == 0 {
		t.Errorf("Metrics().EnqueueRetries = 0: the lost reply was not exercised")
	}
}

// When Redis refuses a chunk part-way (here: out of memory), Enqueue says how many of
// the leading events went in, and exactly those are in the stream.
func TestEnqueuePartialFailureSaysHowMany(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{Args: []string{"--maxmemory", "4mb", "--maxmemory-policy", "noeviction"}})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{TrimInterval: necroredis.Off})
	evs := make([]necro.Event, 20*necroredis.EnqueueChunkEvents)
	pad := strings.Repeat("p", 200)
	for i := range evs {
		evs[i] = seedEvent(t, "FILL", map[string]any{"i": i, "pad": pad})
	}
	err := b.Enqueue(t.Context(), evs...)
	var ee *backend.EnqueueError
	if !errors.As(err, &ee) {
		t.Fatalf("Enqueue of %d events into a 4mb Redis = %v, want an *EnqueueError", len(evs), err)
	}
	if !errors.Is(err, backend.ErrQueueFull) || ee.Unknown != 0 || ee.Enqueued <= 0 || ee.Enqueued >= len(evs) ||
		ee.Enqueued%necroredis.EnqueueChunkEvents != 0 {
		t.Errorf("EnqueueError %+v (%v); want ErrQueueFull, some whole chunks in, none unknown", ee, err)
	}
	if got := streamEventIDs(t, rdb, b.Config().Stream); !slices.Equal(got, eventIDs(evs[:ee.Enqueued])) {
		t.Errorf("the stream holds %d events, want the %d leading ones the error names", len(got), ee.Enqueued)
	}
	if m := b.Metrics(); m.Enqueued != int64(ee.Enqueued) {
		t.Errorf("Metrics().Enqueued = %d, want %d", m.Enqueued, ee.Enqueued)
	}
}

// With Capacity set, a call goes in only when all of it fits: one that cannot stores
// nothing, and says so with ErrQueueFull, not part-way.
func TestEnqueueCapacityCoversTheWholeCall(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	capacity := 2*necroredis.EnqueueChunkEvents + necroredis.EnqueueChunkEvents/2
	b := open(t, srv, necroredis.Config{Capacity: capacity})
	evs := seedMany(t, "CAP", capacity+1)
	err := b.Enqueue(t.Context(), evs...)
	var ee *backend.EnqueueError
	if !errors.Is(err, backend.ErrQueueFull) || errors.As(err, &ee) {
		t.Fatalf("Enqueue(%d events) with Capacity %d = %v; want ErrQueueFull, nothing stored", len(evs), capacity, err)
	}
	if n := rdb.XLen(t.Context(), b.Config().Stream).Val(); n != 0 {
		t.Fatalf("XLEN = %d after a refused call, want 0", n)
	}
	seedEnqueue(t, b, evs[:capacity]...)
	if got := streamEventIDs(t, rdb, b.Config().Stream); !slices.Equal(got, eventIDs(evs[:capacity])) {
		t.Errorf("the stream holds %d events, want %d", len(got), capacity)
	}
}

// The chunks' markers do not pile up: each chunk answered at once has its marker
// deleted by the next one, and the last by Close.
func TestEnqueueMarkersAreDeleted(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	markers := func() []string {
		t.Helper()
		keys, err := rdb.Keys(t.Context(), b.Config().Stream+":enqueue:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	for range 5 {
		seedEnqueue(t, b, seedMany(t, "MARK", 2*necroredis.EnqueueChunkEvents+1)...)
	}
	if keys := markers(); len(keys) > 1 {
		t.Errorf("%d markers after 15 chunks answered at once, want at most the last: %v", len(keys), keys)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if keys := markers(); len(keys) != 0 {
		t.Errorf("markers left after Close: %v", keys)
	}
}

// When Redis stays out of reach past SettleRetryFor, the chunk under way is of unknown
// fate, and the error says so; once Redis is reached again, the attempts that waited
// in the network apply it once, however many there were.
func TestEnqueueUnreachableIsUnknown(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	p, err := netproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() }) // the test is over
	b := open(t, srv, necroredis.Config{URL: "redis://" + p.Addr() + "/0?read_timeout=100ms",
		SettleRetryFor: 500 * time.Millisecond, TrimInterval: necroredis.Off})
	evs := seedMany(t, "UNSURE", 2*necroredis.EnqueueChunkEvents)
	seedEnqueue(t, b, evs[0]) // Redis knows the script, so that a held attempt runs it
	p.Stall()
	err = b.Enqueue(t.Context(), evs[1:]...)
	var ee *backend.EnqueueError
	if !errors.As(err, &ee) || ee.Enqueued != 0 || ee.Unknown != necroredis.EnqueueChunkEvents {
		t.Fatalf("Enqueue while Redis is out of reach = %v; want an *EnqueueError with 0 enqueued and %d unknown",
			err, necroredis.EnqueueChunkEvents)
	}
	p.Resume()
	want := eventIDs(evs[:1+necroredis.EnqueueChunkEvents])
	seedEventually(t, 5*time.Second, "the held attempts never applied the chunk", func() bool {
		return rdb.XLen(t.Context(), b.Config().Stream).Val() >= int64(len(want))
	})
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if got := streamEventIDs(t, rdb, b.Config().Stream); !slices.Equal(got, want) {
		t.Errorf("the stream holds %d events, want the first and the unknown chunk once: %d", len(got), len(want))
	}
}
