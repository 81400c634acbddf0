package redis_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// openAdmin returns an Admin of stream on srv, closed when the test ends.
func openAdmin(t *testing.T, srv *redistest.Server, stream string) *necroredis.Admin {
	t.Helper()
	a, err := necroredis.OpenAdmin(t.Context(), necroredis.Config{URL: srv.URL(), Stream: stream})
	if err != nil {
		t.Fatalf("OpenAdmin(%s) = %v", stream, err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// deadLetter enqueues ev, pulls it and settles it with a dead letter as the Spine writes
// one for a handler failure of organ after attempts (organ "" and attempts 0 for one
// no organ gave up on). It returns the dead letter written.
func deadLetter(t *testing.T, b *necroredis.Backend, ev necro.Event, organ string, attempts int, errText string) backend.DeadLetter {
	t.Helper()
	if err := b.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Pull(t.Context(), 1)
	if err != nil || len(ds) != 1 || ds[0].Event.ID() != ev.ID() {
		t.Fatalf("Pull(1) = %v, %v; want %s", ds, err, ev.ID())
	}
	dl := backend.DeadLetter{Event: ds[0].Event, Organ: organ, Attempts: attempts, Error: errText,
		Reason: "retries exhausted", At: time.Now().UTC().Truncate(time.Microsecond), Receipt: ds[0].Receipt}
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack, DeadLetters: []backend.DeadLetter{dl}}); err != nil {
		t.Fatal(err)
	}
	return dl
}

func newEvent(t *testing.T, typ string, payload any) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// entryIDOf returns the stream entry id of a Redis delivery's receipt ("<id>#<n>").
func entryIDOf(t *testing.T, d backend.Delivery) string {
	t.Helper()
	id, _, ok := strings.Cut(d.Receipt, "#")
	if !ok {
		t.Fatalf("receipt %q has no #", d.Receipt)
	}
	return id
}

// Opening an Admin and inspecting a stream that does not exist creates nothing: no
// stream, no group.
func TestAdminChangesNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	a := openAdmin(t, srv, stream)
	in, err := a.Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if in.Exists || in.Length != 0 || len(in.Groups) != 0 || in.DeadLetters != 0 || in.Delayed != 0 {
		t.Errorf("Inspect of a missing stream = %+v, want it empty and not existing", in)
	}
	if in.Stream != stream || in.DeadLetterStream != stream+":dlq" {
		t.Errorf("Inspect names %q and %q, want %q and %q", in.Stream, in.DeadLetterStream, stream, stream+":dlq")
	}
	if in.ServerVersion == "" {
		t.Error("Inspect found no server version")
	}
	if got, err := srv.Do("EXISTS", stream); err != nil || got != "0" {
		t.Errorf("EXISTS %s = %q, %v after OpenAdmin and Inspect; want 0", stream, got, err)
	}
}

func TestInspect(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	cfg := necroredis.Config{Stream: stream, Group: "g-busy", Consumer: "worker-1", TrimInterval: necroredis.Off}
	b := open(t, srv, cfg)
	open(t, srv, necroredis.Config{Stream: stream, Group: "g-asleep", TrimInterval: necroredis.Off})
	evs := []necro.Event{newEvent(t, "a", nil), newEvent(t, "a", nil), newEvent(t, "a", nil)}
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Pull(t.Context(), 2)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Pull(2) = %d deliveries, %v", len(ds), err)
	}
	due := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack,
		Retries:     []backend.Retry{{Event: ds[0].Event.Retry(2, "A"), At: due}},
		DeadLetters: []backend.DeadLetter{{Event: ds[0].Event, Organ: "B", Attempts: 3, Reason: "retries exhausted", At: time.Now()}},
	}); err != nil {
		t.Fatal(err)
	}

	in, err := openAdmin(t, srv, stream).Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !in.Exists || in.Length != 3 || in.FirstID != entryIDOf(t, ds[0]) || in.LastID == "" || in.LastID == in.FirstID {
		t.Errorf("stream: exists %v, length %d, first %q, last %q; want true, 3, %q and a later last id",
			in.Exists, in.Length, in.FirstID, in.LastID, entryIDOf(t, ds[0]))
	}
	if in.DeadLetters != 1 || in.Delayed != 1 || !in.NextRetry.Equal(due) {
		t.Errorf("dead letters %d, delayed %d, next retry %v; want 1, 1, %v", in.DeadLetters, in.Delayed, in.NextRetry, due)
	}
	if len(in.Groups) != 2 {
		t.Fatalf("groups = %+v, want g-asleep and g-busy", in.Groups)
	}
	asleep, busy := in.Groups[0], in.Groups[1]
	if asleep.Name != "g-asleep" || asleep.Pending != 0 || asleep.Lag != 3 {
		t.Errorf("first group = %+v, want g-asleep with nothing pending and lag 3", asleep)
	}
	for _, c := range asleep.Consumers { // the store's Open made its consumer when it looked for its own entries
		if c.Pending != 0 {
			t.Errorf("g-asleep consumer %+v holds entries, want none", c)
		}
	}
	if busy.Name != "g-busy" || busy.Pending != 1 || busy.Lag != 1 || busy.LastDeliveredID != entryIDOf(t, ds[1]) {
		t.Errorf("second group = %+v, want g-busy with 1 pending, lag 1, last delivered %s", busy, entryIDOf(t, ds[1]))
	}
	if len(busy.Consumers) != 1 {
		t.Fatalf("g-busy consumers = %+v, want worker-1", busy.Consumers)
	}
	c := busy.Consumers[0]
	if c.Name != "worker-1" || c.Pending != 1 || c.Idle < 0 {
		t.Errorf("consumer = %+v, want worker-1 with 1 pending", c)
	}
	major, minor := serverVersion(t, in.ServerVersion)
	if newer := major > 7 || major == 7 && minor >= 2; newer && c.Inactive < 0 || !newer && c.Inactive != -1 {
		t.Errorf("consumer Inactive = %v on Redis %s; want -1 before 7.2, a time after", c.Inactive, in.ServerVersion)
	}
}

func serverVersion(t *testing.T, v string) (major, minor int) {
	t.Helper()
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		t.Fatalf("server version %q", v)
	}
	major, _ = strconv.Atoi(parts[0])
	minor, _ = strconv.Atoi(parts[1])
	return major, minor
}

// pythonEvent is an event as Python NecroStack writes it, with its spaces.
const pythonEvent = `{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "timestamp": "2026-01-02T03:04:05.000006+00:00", "event_type": "order.placed", "payload": {"n": 1}}`

// deadLetters writes five dead letters to stream: two order.placed and a mail.sent by
// the Go store, one order.placed as Python writes it, and a poison entry. It returns
// the dead-letter entries in stream order.
func deadLetters(t *testing.T, srv *redistest.Server, stream string) []necroredis.DeadLetterEntry {
	t.Helper()
	b := open(t, srv, necroredis.Config{Stream: stream})
	deadLetter(t, b, newEvent(t, "order.placed", map[string]any{"n": 1}), "Billing", 3, "card declined")
	deadLetter(t, b, newEvent(t, "mail.sent", nil), "Mailer", 1, "smtp down\nsecond line")
	deadLetter(t, b, newEvent(t, "order.placed", map[string]any{"n": 2}), "Billing", 3, "card declined")
	for _, fields := range [][]string{
		{"original_id", "1-0", "event", pythonEvent, "reason", "Exceeded 3 delivery attempts", "failed_at", "2026-01-02T03:04:05.000006+00:00"},
		{"original_id", "2-0", "event", "not json", "reason", "poison entry: not JSON", "failed_at", "2026-01-02T03:04:05.000006+00:00"},
	} {
		if got, err := srv.Do(append([]string{"XADD", stream + ":dlq", "*"}, fields...)...); err != nil || strings.HasPrefix(got, "ERR:") {
			t.Fatalf("XADD = %q, %v", got, err)
		}
	}
	all, err := openAdmin(t, srv, stream).DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("DeadLetterEntries() = %d entries, want 5", len(all))
	}
	return all
}

func entryIDs(es []necroredis.DeadLetterEntry) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

func TestDeadLetterEntries(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	all := deadLetters(t, srv, stream)
	a := openAdmin(t, srv, stream)
	for i := 1; i < len(all); i++ {
		if !idBefore(all[i-1].ID, all[i].ID) {
			t.Fatalf("entries not oldest first: %v", entryIDs(all))
		}
	}
	types := []string{"order.placed", "mail.sent", "order.placed", "order.placed", ""}
	for i, e := range all {
		if e.Event.Type() != types[i] {
			t.Errorf("entry %d has type %q, want %q", i, e.Event.Type(), types[i])
		}
	}
	if all[4].Fields["event"] != "not json" || !all[4].Event.IsZero() {
		t.Errorf("poison entry = %+v, want a zero event and the stored text", all[4])
	}
	since := idTimeOf(all[2].ID)
	var fromThird []string
	for _, e := range all {
		if !idTimeOf(e.ID).Before(since) {
			fromThird = append(fromThird, e.ID)
		}
	}
	tests := []struct {
		name   string
		filter necroredis.DeadLetterFilter
		want   []string
	}{
		{"type", necroredis.DeadLetterFilter{Type: "order.placed"}, []string{all[0].ID, all[2].ID, all[3].ID}},
		{"type and limit", necroredis.DeadLetterFilter{Type: "order.placed", Limit: 2}, []string{all[0].ID, all[2].ID}},
		{"limit", necroredis.DeadLetterFilter{Limit: 1}, []string{all[0].ID}},
		{"ids in any order, a missing one left out", necroredis.DeadLetterFilter{IDs: []string{all[3].ID, "1-1", all[1].ID, all[3].ID}},
			[]string{all[1].ID, all[3].ID}},
		{"ids and type", necroredis.DeadLetterFilter{IDs: []string{all[1].ID, all[2].ID}, Type: "mail.sent"}, []string{all[1].ID}},
		{"since", necroredis.DeadLetterFilter{Since: since}, fromThird},
		{"since the future", necroredis.DeadLetterFilter{Since: time.Now().Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.DeadLetterEntries(t.Context(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(entryIDs(got), tt.want) {
				t.Errorf("DeadLetterEntries(%+v) = %v, want %v", tt.filter, entryIDs(got), tt.want)
			}
		})
	}
	if _, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{IDs: []string{"x"}}); err == nil {
		t.Error("DeadLetterEntries with id \"x\" succeeded, want an error")
	}
}

func idBefore(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	x, _ := strconv.ParseUint(am, 10, 64)
	y, _ := strconv.ParseUint(bm, 10, 64)
	p, _ := strconv.ParseUint(as, 10, 64)
	q, _ := strconv.ParseUint(bs, 10, 64)
	return x < y || x == y && p < q
}

func idTimeOf(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n)
}

func TestDeadLetterEntry(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	b := open(t, srv, necroredis.Config{Stream: stream})
	ev := newEvent(t, "order.placed", map[string]any{"n": 7})
	dl := deadLetter(t, b, ev, "Billing", 3, "card declined")
	a := openAdmin(t, srv, stream)
	all, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("DeadLetterEntries() = %d entries, %v", len(all), err)
	}
	e, err := a.DeadLetterEntry(t.Context(), all[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != all[0].ID || !e.Event.Equal(ev) || e.Organ != "Billing" || e.Attempts != 3 || e.Error != "card declined" ||
		e.Reason != "retries exhausted" || !e.At.Equal(dl.At) || e.Receipt != dl.Receipt {
		t.Errorf("DeadLetterEntry(%s) = %+v, want the dead letter %+v", all[0].ID, e, dl)
	}
	for _, k := range []string{"original_id", "event", "reason", "failed_at", "organ", "attempts", "error", "meta", "receipt"} {
		if _, ok := e.Fields[k]; !ok {
			t.Errorf("Fields has no %q: %v", k, e.Fields)
		}
	}
	if _, err := a.DeadLetterEntry(t.Context(), "1-1"); !errors.Is(err, necroredis.ErrNoDeadLetter) {
		t.Errorf("DeadLetterEntry(1-1) = %v, want ErrNoDeadLetter", err)
	}
	if _, err := a.DeadLetterEntry(t.Context(), "1-x"); err == nil || errors.Is(err, necroredis.ErrNoDeadLetter) {
		t.Errorf("DeadLetterEntry(1-x) = %v, want an invalid id error", err)
	}
}

// A replayed dead letter is back in the stream with its id, payload and lineage, for
// the organ that gave up on it, at attempt 1; the dead letter is gone, and replaying it
// again does nothing.
func TestReplay(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	b := open(t, srv, necroredis.Config{Stream: stream, TrimInterval: necroredis.Off})
	root := newEvent(t, "order.placed", nil)
	child := newEvent(t, "mail.send", map[string]any{"to": "ann"}).ChildOf(root).
		WithTraceContext(necro.TraceContext{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", State: "k=v"}).
		Retry(3, "Mailer")
	deadLetter(t, b, child, "Mailer", 3, "smtp down")
	announceWorker(t, srv, stream, "Mailer", "mail.send")
	a := openAdmin(t, srv, stream)
	all, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("DeadLetterEntries() = %d entries, %v", len(all), err)
	}
	before, err := a.Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	newID, err := a.Replay(t.Context(), all[0].ID, necroredis.ReplayOptions{})
	if err != nil || newID == "" {
		t.Fatalf("Replay(%s) = %q, %v; want a new entry id", all[0].ID, newID, err)
	}
	ds, err := b.Pull(t.Context(), 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Pull after the replay = %v, %v", ds, err)
	}
	got := ds[0].Event
	if entryIDOf(t, ds[0]) != newID {
		t.Errorf("pulled entry %s, want the replayed %s", entryIDOf(t, ds[0]), newID)
	}
	want := necro.Metadata{CorrelationID: root.ID(), CausationID: root.ID(), Depth: 1, Attempt: 1, Targets: []string{"Mailer"},
		TraceParent: child.Meta().TraceParent, TraceState: "k=v"}
	if wantEv, _ := child.WithMeta(want); !got.Equal(wantEv) {
		t.Errorf("replayed event = %v with %+v, want %v with %+v", got, got.Meta(), child, want)
	}

	after, err := a.Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.DeadLetters != 0 || after.Length != before.Length+1 {
		t.Errorf("after the replay: %d dead letters, stream length %d; want 0 and %d", after.DeadLetters, after.Length, before.Length+1)
	}
	again, err := a.Replay(t.Context(), all[0].ID, necroredis.ReplayOptions{})
	if err != nil || again != "" {
		t.Errorf("second Replay = %q, %v; want \"\", nil", again, err)
	}
	if in, err := a.Inspect(t.Context()); err != nil || in.Length != after.Length {
		t.Errorf("stream length after a second replay = %d, %v; want %d", in.Length, err, after.Length)
	}
}

func TestReplayEventTargets(t *testing.T) {
	ev, err := necro.NewEvent("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	retried := ev.Retry(2, "A")
	tests := []struct {
		name string
		e    necroredis.DeadLetterEntry
		opts necroredis.ReplayOptions
		want []string
	}{
		{"handler failure: the organ that gave up", entry(ev, "B", 3), necroredis.ReplayOptions{}, []string{"B"}},
		{"every organ", entry(retried, "A", 3), necroredis.ReplayOptions{EveryOrgan: true}, nil},
		{"depth budget: the emitter is no target", entry(ev, "A", 0), necroredis.ReplayOptions{}, nil},
		{"refused by the store", entry(ev, "", 1), necroredis.ReplayOptions{}, nil},
		{"delivered too often: its own targets", entry(retried, "", 0), necroredis.ReplayOptions{}, []string{"A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.e.ReplayEvent(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if m := got.Meta(); !slices.Equal(m.Targets, tt.want) || m.Attempt != 1 || got.ID() != ev.ID() {
				t.Errorf("ReplayEvent = %s with %+v, want %s, targets %v, attempt 1", got.ID(), m, ev.ID(), tt.want)
			}
		})
	}
	if _, err := (necroredis.DeadLetterEntry{ID: "1-0"}).ReplayEvent(necroredis.ReplayOptions{}); !errors.Is(err, necroredis.ErrNotReplayable) {
		t.Errorf("ReplayEvent of an entry without an event = %v, want ErrNotReplayable", err)
	}
}

func entry(ev necro.Event, organ string, attempts int) necroredis.DeadLetterEntry {
	return necroredis.DeadLetterEntry{ID: "1-0", DeadLetter: backend.DeadLetter{Event: ev, Organ: organ, Attempts: attempts}}
}

// An entry Python wrote is replayed with its text as it was; a poison entry is not
// replayed and stays.
func TestReplayPythonAndPoison(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	all := deadLetters(t, srv, stream)
	announceWorker(t, srv, stream, "OrderBook", "order.placed")
	a := openAdmin(t, srv, stream)
	python, poison := all[3], all[4]
	newID, err := a.Replay(t.Context(), python.ID, necroredis.ReplayOptions{})
	if err != nil || newID == "" {
		t.Fatalf("Replay of the Python entry = %q, %v", newID, err)
	}
	if _, err := a.Replay(t.Context(), poison.ID, necroredis.ReplayOptions{}); !errors.Is(err, necroredis.ErrNotReplayable) {
		t.Errorf("Replay of a poison entry = %v, want ErrNotReplayable", err)
	}
	left, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{all[0].ID, all[1].ID, all[2].ID, poison.ID}; !slices.Equal(entryIDs(left), want) {
		t.Errorf("dead letters left = %v, want %v", entryIDs(left), want)
	}
	// The stream holds the Python text unchanged: a fresh group reads it from the start.
	b := open(t, srv, necroredis.Config{Stream: stream, Group: unique("fresh-")})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		ds, err := b.Pull(ctx, 10)
		if err != nil {
			t.Fatalf("the replayed Python event never came: %v", err)
		}
		for _, d := range ds {
			if entryIDOf(t, d) == newID {
				if d.Event.ID() != "0f8fad5b-d9cb-469f-a165-70867728950e" || d.Event.Type() != "order.placed" || d.Event.Attempt() != 1 {
					t.Errorf("replayed Python event = %v, attempt %d", d.Event, d.Event.Attempt())
				}
				return
			}
		}
	}
}

// Two replays of the same dead letter at once enqueue its event once.
func TestReplayRace(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	b := open(t, srv, necroredis.Config{Stream: stream})
	deadLetter(t, b, newEvent(t, "x", nil), "A", 1, "boom")
	announceWorker(t, srv, stream, "A", "x")
	a := openAdmin(t, srv, stream)
	all, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("DeadLetterEntries() = %d entries, %v", len(all), err)
	}
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, err := a.Replay(t.Context(), all[0].ID, necroredis.ReplayOptions{})
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	replayed := slices.DeleteFunc(ids, func(id string) bool { return id == "" })
	if len(replayed) != 1 {
		t.Errorf("%d concurrent replays enqueued %d copies (%v), want 1", n, len(replayed), replayed)
	}
}

func TestPurgeDeadLetters(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	all := deadLetters(t, srv, stream)
	a := openAdmin(t, srv, stream)
	n, err := a.PurgeDeadLetters(t.Context(), []string{all[1].ID, all[4].ID, "1-1", all[1].ID})
	if err != nil || n != 2 {
		t.Errorf("PurgeDeadLetters = %d, %v; want 2", n, err)
	}
	left, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{all[0].ID, all[2].ID, all[3].ID}; !slices.Equal(entryIDs(left), want) {
		t.Errorf("dead letters left = %v, want %v", entryIDs(left), want)
	}
	if _, err := a.PurgeDeadLetters(t.Context(), []string{"not-an-id"}); err == nil {
		t.Error("PurgeDeadLetters(not-an-id) succeeded, want an error")
	}
}

func TestDrop(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	b := open(t, srv, necroredis.Config{Stream: stream})
	deadLetter(t, b, newEvent(t, "x", nil), "A", 1, "boom")
	if err := b.Close(); err != nil { // a store still open could create its group again
		t.Fatal(err)
	}
	a := openAdmin(t, srv, stream)
	if err := a.Drop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := srv.Do("EXISTS", stream, stream+":dlq", stream+":delayed"); err != nil || got != "0" {
		t.Errorf("EXISTS after Drop = %q, %v; want 0", got, err)
	}
}
