package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
)

var (
	uuidV4  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	traceID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// A service is one run of the program in the background, on a free port.
type service struct {
	url  string      // http://127.0.0.1:<port>
	logs *syncBuffer // run's stderr: the JSON logs
	stop context.CancelFunc
	done chan error // run's result
}

// startService runs the program with args and -addr 127.0.0.1:0, and returns once it
// listens. Telemetry is off unless the test set OTEL_* variables (see cleanEnv). The
// service is shut down at the end of the test unless the test did it.
func startService(t *testing.T, args ...string) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &service{logs: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	addr := make(chan string, 1) // listening must not wait for the test to read it
	go func() {
		s.done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), s.logs, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case err := <-s.done:
		t.Fatalf("run() = %v before it listened; logs:\n%s", err, s.logs)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("run() did not listen within 20s; logs:\n%s", s.logs)
	}
	t.Cleanup(func() {
		if s.done != nil {
			_ = s.shutdown(t) // the test failed before shutting it down; its error says why
		}
	})
	return s
}

// shutdown sends the service the shutdown signal and returns run's result.
func (s *service) shutdown(t *testing.T) error {
	t.Helper()
	// A connection the client opened and never sent a request on holds the server's
	// Shutdown up for 5s, as net/http treats it as active until then.
	client.CloseIdleConnections()
	s.stop()
	select {
	case err := <-s.done:
		s.done = nil
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("run() did not return within 20s of the shutdown signal; logs:\n%s", s.logs)
		return nil
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

// A reply is an HTTP answer with its body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// do sends a request and returns the answer; header holds name, value pairs.
func do(t *testing.T, method, url, body string, header ...string) reply {
	t.Helper()
	r, err := send(t.Context(), method, url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is do for a goroutine of the test, which must not call t.Fatal.
func send(ctx context.Context, method, url, body string, header ...string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return reply{resp.StatusCode, resp.Header, data}, nil
}

// placeOrder posts body to /orders, wants 202, and returns the answer.
func placeOrder(t *testing.T, base, body string, header ...string) accepted {
	t.Helper()
	r := do(t, http.MethodPost, base+"/orders", body, header...)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /orders %s = %s, want 202", body, r)
	}
	var a accepted
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("POST /orders %s: body %q: %v", body, r.body, err)
	}
	if !uuidV4.MatchString(a.OrderID) {
		t.Errorf("POST /orders %s: order_id %q, want a UUID v4", body, a.OrderID)
	}
	if loc := r.header.Get("Location"); loc != "/orders/"+a.OrderID {
		t.Errorf("POST /orders %s: Location %q, want /orders/%s", body, loc, a.OrderID)
	}
	return a
}

// finalOrder polls GET /orders/{id} until the order is confirmed or rejected.
func finalOrder(t *testing.T, base, id string) order {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		r := do(t, http.MethodGet, base+"/orders/"+id, "")
		if r.status != http.StatusOK {
			t.Fatalf("GET /orders/%s = %s, want 200", id, r)
		}
		var o order
		if err := json.Unmarshal(r.body, &o); err != nil {
			t.Fatalf("GET /orders/%s: body %q: %v", id, r.body, err)
		}
		if final(o.Status) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /orders/%s: still %q after 10s", id, o.Status)
		}
		<-tick.C
	}
}

func TestServiceTakesOrders(t *testing.T) {
	cleanEnv(t)
	svc := startService(t)

	kbd := placeOrder(t, svc.url, `{"customer": "ada", "sku": "kbd-01", "quantity": 2}`)
	big := placeOrder(t, svc.url, `{"customer": "bob", "sku": "mon-27", "quantity": 5}`)
	odd := placeOrder(t, svc.url, `{"customer": "cy", "sku": "tv-65", "quantity": 1}`)
	if kbd.TraceID != "" {
		t.Errorf("202 with tracing off has trace_id %q, want none", kbd.TraceID)
	}
	if r := do(t, http.MethodPost, svc.url+"/orders", `{"customer": "ada", "sku": "kbd-01", "quantity": 0}`); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), `"field":"quantity"`) {
		t.Errorf("POST /orders with quantity 0 = %s, want 400 naming quantity", r)
	}

	want := map[string]order{
		kbd.OrderID: {ID: kbd.OrderID, Status: statusConfirmed, Customer: "ada", SKU: "kbd-01", Quantity: 2,
			AmountCents: 9800, PaymentID: "pay_" + kbd.OrderID},
		big.OrderID: {ID: big.OrderID, Status: statusRejected, Customer: "bob", SKU: "mon-27", Quantity: 5,
			Reason: "out of stock: 3 27-inch monitor left, 5 wanted"},
		odd.OrderID: {ID: odd.OrderID, Status: statusRejected, Customer: "cy", SKU: "tv-65", Quantity: 1,
			Reason: `unknown sku "tv-65"`},
	}
	for id, w := range want {
		if got := finalOrder(t, svc.url, id); got != w {
			t.Errorf("GET /orders/%s = %+v, want %+v", id, got, w)
		}
	}
	if r := do(t, http.MethodGet, svc.url+"/orders/no-such-order", ""); r.status != http.StatusNotFound {
		t.Errorf("GET /orders/no-such-order = %s, want 404", r)
	}

	for path, body := range map[string]string{"/readyz": "spine: ok\n", "/healthz": "ok\n"} {
		if r := do(t, http.MethodGet, svc.url+path, ""); r.status != http.StatusOK || string(r.body) != body {
			t.Errorf("GET %s while serving = %s, want 200 %q", path, r, body)
		}
	}
	if r := do(t, http.MethodGet, svc.url+"/metrics", ""); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), "necro_events_processed") {
		t.Errorf("GET /metrics = %d, want 200 with necro_events_processed:\n%s", r.status, r.body)
	}

	if err := svc.shutdown(t); err != nil {
		t.Fatalf("run() after the shutdown signal = %v, want nil; logs:\n%s", err, svc.logs)
	}
	lines := logLines(t, svc.logs.String())
	checkNotified(t, lines, want)
	checkStopped(t, lines, 1, 2)
}

// TestShutdownFinishesEveryOrder sends the shutdown signal right after a burst of
// orders, without waiting for them: every order answered 202 must still be handled
// before run returns, and the stock never oversold. Billing takes 20ms an order, one at
// a time, so the signal finds most orders unfinished: some in flight, the follow-ups of
// the rest still in the queue.
func TestShutdownFinishesEveryOrder(t *testing.T) {
	cleanEnv(t)
	svc := startService(t, "-payment-latency", "20ms")

	skus := map[string]int{"mou-01": 30, "kbd-01": 10, "mon-27": 8} // 8 monitors of 3 in stock
	var mu sync.Mutex
	placed := map[string]string{} // order id → sku
	var wg sync.WaitGroup
	for sku, n := range skus {
		for i := range n {
			wg.Go(func() {
				body := fmt.Sprintf(`{"customer": "c%d", "sku": %q, "quantity": 1}`, i, sku)
				r, err := send(t.Context(), http.MethodPost, svc.url+"/orders", body)
				var a accepted
				if err == nil {
					err = json.Unmarshal(r.body, &a)
				}
				if err != nil || r.status != http.StatusAccepted {
					t.Errorf("POST /orders %s = %v, %v; want 202", body, r, err)
					return
				}
				mu.Lock()
				placed[a.OrderID] = sku
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if err := svc.shutdown(t); err != nil {
		t.Fatalf("run() after the shutdown signal = %v, want nil; logs:\n%s", err, svc.logs)
	}

	lines := logLines(t, svc.logs.String())
	for _, l := range lines {
		if l.Msg == "shutting down" && l.Unfinished < 10 {
			t.Errorf("only %d of %d orders were unfinished at the shutdown signal; the test is meant to "+
				"shut down a busy service (did posting take over a second?)", l.Unfinished, len(placed))
		}
	}
	status := map[string]string{}
	for _, l := range lines {
		if l.Msg == "customer notified" {
			status[l.OrderID] = l.Status
		}
	}
	confirmed := map[string]int{}
	for id, sku := range placed {
		switch status[id] {
		case statusConfirmed:
			confirmed[sku]++
		case statusRejected:
		default:
			t.Errorf("order %s (%s) was never finished: the customer was not notified", id, sku)
		}
	}
	if want := map[string]int{"mou-01": 30, "kbd-01": 10, "mon-27": 3}; !equalCounts(confirmed, want) {
		t.Errorf("confirmed orders by sku = %v, want %v", confirmed, want)
	}
	checkStopped(t, lines, 43, 5)
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// newTestAPI returns the api over a memory queue of the given capacity and a Spine
// that is not running, so that what is emitted stays in the queue.
func newTestAPI(t *testing.T, capacity int) (*httptest.Server, *memory.Backend, *shop) {
	t.Helper()
	q, err := memory.New(memory.Config{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	log := slog.New(slog.DiscardHandler)
	sh := newShop(log, 0)
	sp, err := spine.New(q, sh.mounts(), spine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	(&api{sp: sp, shop: sh, log: log, tracer: tracenoop.NewTracerProvider().Tracer("test")}).routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, q, sh
}

func TestPlaceOrderRejectsInvalidBodies(t *testing.T) {
	srv, q, _ := newTestAPI(t, 10)
	tests := []struct {
		name, body string
		field      string // "" for a body that is not an object
		problem    string
	}{
		{"not JSON", `{"customer": "ada",`, "", "body must be a JSON object"},
		{"an array", `[{"customer": "ada"}]`, "", "body must be a JSON object"},
		{"null", `null`, "", "body must be a JSON object"},
		{"empty", ``, "", "body must be a JSON object"},
		{"unknown field", `{"customer": "ada", "sku": "kbd-01", "quantity": 1, "coupon": "X"}`, "coupon", "unknown field"},
		{"no customer", `{"sku": "kbd-01", "quantity": 1}`, "customer", "required"},
		{"blank customer", `{"customer": "  ", "sku": "kbd-01", "quantity": 1}`, "customer", "must not be blank"},
		{"customer a number", `{"customer": 7, "sku": "kbd-01", "quantity": 1}`, "customer", "must be a string, got 7"},
		{"no sku", `{"customer": "ada", "quantity": 1}`, "sku", "required"},
		{"no quantity", `{"customer": "ada", "sku": "kbd-01"}`, "quantity", "required"},
		{"quantity zero", `{"customer": "ada", "sku": "kbd-01", "quantity": 0}`, "quantity", "from 1 to 100, got 0"},
		{"quantity too big", `{"customer": "ada", "sku": "kbd-01", "quantity": 101}`, "quantity", "got 101"},
		{"quantity a fraction", `{"customer": "ada", "sku": "kbd-01", "quantity": 1.5}`, "quantity", "got 1.5"},
		{"quantity a string", `{"customer": "ada", "sku": "kbd-01", "quantity": "2"}`, "quantity", `got "2"`},
		{"quantity null", `{"customer": "ada", "sku": "kbd-01", "quantity": null}`, "quantity", "got null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, http.MethodPost, srv.URL+"/orders", tt.body)
			var e apiError
			if err := json.Unmarshal(r.body, &e); r.status != http.StatusBadRequest || err != nil {
				t.Fatalf("POST /orders %s = %s, want 400 with a JSON error", tt.body, r)
			}
			if e.Field != tt.field || !strings.Contains(e.Error, tt.problem) ||
				(tt.field != "" && !strings.HasPrefix(e.Error, tt.field+": ")) {
				t.Errorf("POST /orders %s: error %+v, want field %q and an error %q naming it", tt.body, e, tt.field, tt.problem)
			}
		})
	}
	if n := q.Len(); n != 0 {
		t.Errorf("the invalid orders put %d events in the queue, want none", n)
	}
}

func TestPlaceOrderAnswers503WhenTheQueueIsFull(t *testing.T) {
	srv, q, sh := newTestAPI(t, 1)
	const body = `{"customer": "ada", "sku": "kbd-01", "quantity": 1}`
	first := placeOrder(t, srv.URL, body)

	r := do(t, http.MethodPost, srv.URL+"/orders", body)
	var e apiError
	if err := json.Unmarshal(r.body, &e); r.status != http.StatusServiceUnavailable || err != nil || e.Error == "" {
		t.Fatalf("POST /orders to a full queue = %s, want 503 with a JSON error", r)
	}
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("503 Retry-After = %q, want %q", got, retryAfter)
	}
	// The refused order was never placed: the shop forgot it; the first one waits.
	if got := sh.counts(); !equalCounts(got, map[string]int{statusAccepted: 1}) {
		t.Errorf("orders by status = %v, want only the first one, accepted", got)
	}
	if _, ok := sh.order(first.OrderID); !ok || q.Len() != 1 {
		t.Errorf("after the 503: order %s recorded %v, queue length %d; want it recorded and queued", first.OrderID, ok, q.Len())
	}
}

// TestServiceAnswers503WhenBusy fills the whole service: with room for one event in
// the queue and one in progress, and billing taking 300ms an order, the orders posted
// in quick succession soon find the queue full. Those taken are all finished at
// shutdown all the same.
func TestServiceAnswers503WhenBusy(t *testing.T) {
	cleanEnv(t)
	svc := startService(t, "-capacity", "1", "-payment-latency", "300ms")
	var taken []string
	var full *reply
	for i := 0; i < 10 && full == nil; i++ {
		r := do(t, http.MethodPost, svc.url+"/orders", `{"customer": "ada", "sku": "mou-01", "quantity": 1}`)
		switch r.status {
		case http.StatusAccepted:
			var a accepted
			if err := json.Unmarshal(r.body, &a); err != nil {
				t.Fatalf("202 body %q: %v", r.body, err)
			}
			taken = append(taken, a.OrderID)
		case http.StatusServiceUnavailable:
			full = &r
		default:
			t.Fatalf("POST /orders = %s, want 202 or 503", r)
		}
	}
	if full == nil {
		t.Fatalf("10 orders in a row were all taken, want a 503 once the queue is full")
	}
	if got := full.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("503 Retry-After = %q, want %q", got, retryAfter)
	}
	if err := svc.shutdown(t); err != nil {
		t.Fatalf("run() after the shutdown signal = %v, want nil; logs:\n%s", err, svc.logs)
	}
	want := map[string]order{}
	for _, id := range taken {
		want[id] = order{Status: statusConfirmed}
	}
	lines := logLines(t, svc.logs.String())
	checkNotified(t, lines, want)
	checkStopped(t, lines, len(taken), 0)
}

func TestServiceOnRedis(t *testing.T) {
	cleanEnv(t)
	srv := redistest.Start(t, redistest.Config{})
	svc := startService(t, "-redis", srv.URL())

	ok := placeOrder(t, svc.url, `{"customer": "ada", "sku": "mou-01", "quantity": 3}`)
	no := placeOrder(t, svc.url, `{"customer": "bob", "sku": "mon-27", "quantity": 4}`)
	if got := finalOrder(t, svc.url, ok.OrderID); got.Status != statusConfirmed || got.AmountCents != 5700 {
		t.Errorf("GET /orders/%s = %+v, want confirmed for 5700 cents", ok.OrderID, got)
	}
	if got := finalOrder(t, svc.url, no.OrderID); got.Status != statusRejected {
		t.Errorf("GET /orders/%s = %+v, want rejected", no.OrderID, got)
	}
	if r := do(t, http.MethodGet, svc.url+"/readyz", ""); r.status != http.StatusOK || string(r.body) != "redis: ok\nspine: ok\n" {
		t.Errorf("GET /readyz = %s, want 200 with redis and spine ok", r)
	}
	if err := svc.shutdown(t); err != nil {
		t.Fatalf("run() after the shutdown signal = %v, want nil; logs:\n%s", err, svc.logs)
	}
	checkStopped(t, logLines(t, svc.logs.String()), 1, 1)
}

// TestServiceTracesEachOrder turns tracing on: the 202 names the order's trace, which
// goes on from the caller's traceparent, and the organs' log lines carry it.
func TestServiceTracesEachOrder(t *testing.T) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // an empty 200 is a valid OTLP/HTTP answer
	}))
	t.Cleanup(collector.Close)
	cleanEnv(t, "OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	svc := startService(t)

	fresh := placeOrder(t, svc.url, `{"customer": "ada", "sku": "kbd-01", "quantity": 1}`)
	if !traceID.MatchString(fresh.TraceID) {
		t.Errorf("202 with tracing on has trace_id %q, want 32 hex digits", fresh.TraceID)
	}
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	joined := placeOrder(t, svc.url, `{"customer": "bob", "sku": "kbd-01", "quantity": 1}`,
		"traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	if joined.TraceID != callerTrace {
		t.Errorf("202 for a request with a traceparent has trace_id %q, want the caller's %s", joined.TraceID, callerTrace)
	}
	for _, a := range []accepted{fresh, joined} {
		if got := finalOrder(t, svc.url, a.OrderID); got.TraceID != a.TraceID {
			t.Errorf("GET /orders/%s has trace_id %q, want %q", a.OrderID, got.TraceID, a.TraceID)
		}
	}
	if err := svc.shutdown(t); err != nil {
		t.Fatalf("run() after the shutdown signal = %v, want nil; logs:\n%s", err, svc.logs)
	}
	want := map[string]string{fresh.OrderID: fresh.TraceID, joined.OrderID: joined.TraceID}
	n := 0
	for _, l := range logLines(t, svc.logs.String()) {
		if l.Organ == "" {
			continue
		}
		n++
		if l.TraceID != want[l.CorrelationID] || l.SpanID == "" {
			t.Errorf("organ line %+v: trace_id %q, want %q and a span_id", l, l.TraceID, want[l.CorrelationID])
		}
	}
	if n != 6 {
		t.Errorf("organs logged %d lines, want 6 (3 per order):\n%s", n, svc.logs)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-capacity", "0"}, {"-shutdown-timeout", "0s"}, {"-payment-latency", "-1s"}, {"extra"}, {"-nope"}} {
		var stderr syncBuffer
		err := run(t.Context(), args, &stderr, nil)
		if !errors.As(err, new(usageError)) || !strings.Contains(stderr.String(), "Usage of httpservice") {
			t.Errorf("run(%q) = %v with stderr:\n%s\nwant a usageError and the usage", args, err, stderr.String())
		}
	}
}

// A logLine is the part of a JSON log line the tests read.
type logLine struct {
	Msg           string `json:"msg"`
	Organ         string `json:"organ"`
	CorrelationID string `json:"correlation_id"`
	TraceID       string `json:"trace_id"`
	SpanID        string `json:"span_id"`
	OrderID       string `json:"order_id"`
	Status        string `json:"status"`
	Confirmed     int    `json:"confirmed"`
	Rejected      int    `json:"rejected"`
	Unfinished    int    `json:"unfinished"`
}

func logLines(t *testing.T, logs string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// checkNotified checks that the notifier told each customer the final status, on a
// line that carries the order's flow.
func checkNotified(t *testing.T, lines []logLine, want map[string]order) {
	t.Helper()
	got := map[string]string{}
	for _, l := range lines {
		if l.Msg != "customer notified" {
			continue
		}
		if l.Organ != "notifier" || l.CorrelationID != l.OrderID {
			t.Errorf("notifier line %+v: want organ notifier and the order id as correlation_id", l)
		}
		got[l.OrderID] = l.Status
	}
	for id, o := range want {
		if got[id] != o.Status {
			t.Errorf("order %s: customer notified of %q, want %q", id, got[id], o.Status)
		}
	}
}

// checkStopped checks the last line, which counts the orders run saw through.
func checkStopped(t *testing.T, lines []logLine, confirmed, rejected int) {
	t.Helper()
	if len(lines) == 0 {
		t.Fatal("no log lines")
	}
	last := lines[len(lines)-1]
	if last.Msg != "stopped" || last.Confirmed != confirmed || last.Rejected != rejected || last.Unfinished != 0 {
		t.Errorf("last log line %+v, want stopped with %d confirmed, %d rejected, 0 unfinished", last, confirmed, rejected)
	}
}

// cleanEnv unsets every OTEL_* variable for the test, sets the given ones, and puts
// otel's global providers back to no-ops afterwards, since telemetry.Setup sets them.
func cleanEnv(t *testing.T, kv ...string) {
	t.Helper()
	for _, e := range os.Environ() {
		if name, _, _ := strings.Cut(e, "="); strings.HasPrefix(name, "OTEL_") {
			t.Setenv(name, "") // registers the restore
			if err := os.Unsetenv(name); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
}

// A syncBuffer is a bytes.Buffer that run's logger and the test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
