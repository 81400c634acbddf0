package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/necrostack/necro/internal/redistest"
)

// wantOutcomes is what becomes of each sample order, and wantStats the Spine's counts:
// two orders take three deliveries each (order.placed, payment.captured,
// shipment.scheduled); mallory's order.placed is delivered three times, failing each
// time, and is dead-lettered after the third.
var wantOutcomes = map[string]string{
	"A-1001": "shipped as SHP-1001, ada notified",
	"A-1002": "shipped as SHP-1002, grace notified",
	"A-1003": "dead-lettered by payment after 3 attempts: charge order A-1003: card processor unavailable",
}

const wantStats = "spine: processed 9, emitted 4, retried 2, dead-lettered 1"

// testContext bounds a run, so that a Spine that never finishes fails the test in
// seconds; a run takes milliseconds in memory and about a second on Redis.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 20*time.Second, errors.New("the run did not finish within 20s"))
	t.Cleanup(cancel)
	return ctx
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

// A receiver is an OTLP/HTTP endpoint, like Jaeger's on port 4318, that keeps the
// spans and the names of the metrics it is sent.
type receiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span // guarded by mu
	service map[string]bool // service.name of every resource that sent spans; guarded by mu
	metrics map[string]bool // guarded by mu
}

// startReceiver serves a receiver for the test and returns it with its base URL, the
// value of OTEL_EXPORTER_OTLP_ENDPOINT.
func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	rc := &receiver{service: map[string]bool{}, metrics: map[string]bool{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want a POST of application/x-protobuf", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					rc.service[kv.GetValue().GetStringValue()] = true
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				rc.spans = append(rc.spans, ss.GetSpans()...)
			}
		}
		rc.mu.Unlock()
		resp = &collectortrace.ExportTraceServiceResponse{}
	case "/v1/metrics":
		req := &collectormetrics.ExportMetricsServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					rc.metrics[m.GetName()] = true
				}
			}
		}
		rc.mu.Unlock()
		resp = &collectormetrics.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, r)
		return
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out) // the exporter going away is its own problem
}

// received returns the spans received, by trace id in hex.
func (rc *receiver) received() map[string][]*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]*tracepb.Span{}
	for _, s := range rc.spans {
		id := hex.EncodeToString(s.GetTraceId())
		out[id] = append(out[id], s)
	}
	return out
}

// A row is one order's line of the report.
type row struct {
	order, trace, outcome string
}

var (
	rowLine = regexp.MustCompile(`^(A-\d+)\s+(\S+)\s+(.+)$`)
	traceID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// parseReport reads the order lines of the report and checks the outcomes and the
// Spine's counts.
func parseReport(t *testing.T, out string) []row {
	t.Helper()
	var rows []row
	for line := range strings.Lines(out) {
		if m := rowLine.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
			rows = append(rows, row{order: m[1], trace: m[2], outcome: m[3]})
		}
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.order] = r.outcome
	}
	if len(rows) != len(wantOutcomes) || !maps.Equal(got, wantOutcomes) {
		t.Errorf("report outcomes = %q, want %q; the report:\n%s", got, wantOutcomes, out)
	}
	if !strings.Contains(out, wantStats+"\n") {
		t.Errorf("report lacks %q:\n%s", wantStats, out)
	}
	return rows
}

// attr returns the value of a span attribute, an integer in decimal.
func attr(s *tracepb.Span, key string) (string, bool) {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() != key {
			continue
		}
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue, true
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10), true
		}
		return kv.GetValue().String(), true
	}
	return "", false
}

func hasEvent(s *tracepb.Span, name string) bool {
	return slices.ContainsFunc(s.GetEvents(), func(e *tracepb.Span_Event) bool { return e.GetName() == name })
}

func failed(s *tracepb.Span) bool {
	return s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
}

// checkTraces checks that each order is one trace rooted at the program's checkout
// span: Emit's send span under it, each organ's process span under the span that
// created its event, and, for the order that fails, three sibling payment attempts in
// error, the last one dead-lettered.
func checkTraces(t *testing.T, rows []row, traces map[string][]*tracepb.Span, system string) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.trace] {
			t.Errorf("order %s has trace %s, which another order has too", r.order, r.trace)
		}
		seen[r.trace] = true
		spans := traces[r.trace]
		if len(spans) == 0 {
			t.Errorf("order %s: the receiver has no span of trace %s", r.order, r.trace)
			continue
		}
		byID := map[string]*tracepb.Span{}
		for _, s := range spans {
			byID[hex.EncodeToString(s.GetSpanId())] = s
		}
		parentOf := func(s *tracepb.Span) *tracepb.Span { return byID[hex.EncodeToString(s.GetParentSpanId())] }
		var root, send *tracepb.Span
		organs := map[string][]*tracepb.Span{} // organ → its process spans
		var charges []*tracepb.Span
		conversations := map[string]bool{}
		for _, s := range spans {
			switch {
			case len(s.GetParentSpanId()) == 0:
				if root != nil {
					t.Errorf("order %s: trace %s has two roots, %q and %q", r.order, r.trace, root.GetName(), s.GetName())
				}
				root = s
				continue
			case parentOf(s) == nil:
				t.Errorf("order %s: span %q has a parent that is not in trace %s", r.order, s.GetName(), r.trace)
			}
			switch name := s.GetName(); {
			case strings.HasPrefix(name, "send "):
				send = s
			case strings.HasPrefix(name, "process "):
				organ, _ := attr(s, "necro.organ")
				organs[organ] = append(organs[organ], s)
				if got, _ := attr(s, "messaging.system"); got != system {
					t.Errorf("order %s: %q has messaging.system %q, want %q", r.order, name, got, system)
				}
				c, _ := attr(s, "messaging.message.conversation_id")
				conversations[c] = true
			case name == "charge card":
				charges = append(charges, s)
			}
		}
		if root == nil || root.GetName() != "checkout" {
			t.Errorf("order %s: trace %s is not rooted at the checkout span (root %v)", r.order, r.trace, root)
			continue
		}
		if id, _ := attr(root, "order.id"); id != r.order {
			t.Errorf("order %s: its checkout span has order.id %q", r.order, id)
		}
		if send == nil || parentOf(send) != root {
			t.Errorf("order %s: no send span under the checkout span", r.order)
			continue
		}
		if len(conversations) != 1 {
			t.Errorf("order %s: process spans carry conversation ids %v, want one, the flow's correlation id", r.order, conversations)
		}
		for _, c := range charges {
			if p := parentOf(c); p == nil || !strings.HasPrefix(p.GetName(), "process order.placed") {
				t.Errorf("order %s: the charge card span is not a child of payment's process span", r.order)
			}
		}

		pay := organs["payment"]
		if !strings.HasPrefix(r.outcome, "dead-lettered") {
			if len(pay) != 1 || len(organs["shipping"]) != 1 || len(organs["notify"]) != 1 || len(organs) != 3 {
				t.Errorf("order %s: process spans by organ: %v; want one each of payment, shipping and notify", r.order, count(organs))
				continue
			}
			ship, notify := organs["shipping"][0], organs["notify"][0]
			for _, c := range []struct {
				span, parent *tracepb.Span
				name         string
			}{{pay[0], send, "process order.placed"}, {ship, pay[0], "process payment.captured"}, {notify, ship, "process shipment.scheduled"}} {
				if c.span.GetName() != c.name || parentOf(c.span) != c.parent || failed(c.span) {
					t.Errorf("order %s: %q (parent %q, failed %v); want %q under %q, not failed", r.order, c.span.GetName(),
						parentOf(c.span).GetName(), failed(c.span), c.name, c.parent.GetName())
				}
			}
			continue
		}
		if len(pay) != 3 || len(organs) != 1 {
			t.Errorf("order %s: process spans by organ: %v; want three of payment, nothing else", r.order, count(organs))
			continue
		}
		var attempts []string
		for _, s := range pay {
			a, _ := attr(s, "necro.attempt")
			attempts = append(attempts, a)
			outcome, _ := attr(s, "necro.outcome")
			wantOutcome, wantEvent := "retry", "necro.retry"
			if a == "3" {
				wantOutcome, wantEvent = "dead_letter", "necro.dead_letter"
			}
			if parentOf(s) != send || !failed(s) || outcome != wantOutcome || !hasEvent(s, wantEvent) || !hasEvent(s, "exception") {
				t.Errorf("order %s: payment attempt %s: parent %q, failed %v, outcome %q, events %v; want a failed sibling under the send span, outcome %q, event %s",
					r.order, a, parentOf(s).GetName(), failed(s), outcome, eventNames(s), wantOutcome, wantEvent)
			}
		}
		slices.Sort(attempts)
		if !slices.Equal(attempts, []string{"1", "2", "3"}) {
			t.Errorf("order %s: payment attempts %v, want 1, 2, 3", r.order, attempts)
		}
	}
}

func count(organs map[string][]*tracepb.Span) map[string]int {
	out := map[string]int{}
	for o, s := range organs {
		out[o] = len(s)
	}
	return out
}

func eventNames(s *tracepb.Span) []string {
	var out []string
	for _, e := range s.GetEvents() {
		out = append(out, e.GetName())
	}
	return out
}

// A logLine is the part of a JSON log line the tests read.
type logLine struct {
	Msg           string `json:"msg"`
	Organ         string `json:"organ"`
	TraceID       string `json:"trace_id"`
	SpanID        string `json:"span_id"`
	CorrelationID string `json:"correlation_id"`
	EventID       string `json:"event_id"`
}

// organLines returns the lines the organs log inside Handle.
func organLines(t *testing.T, stderr string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", sc.Text(), err)
		}
		switch l.Msg {
		case "payment captured", "shipment scheduled", "customer notified":
			out = append(out, l)
		}
	}
	return out
}

func TestRunTracesEachOrder(t *testing.T) {
	rc, url := startReceiver(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", url, "OTEL_TRACES_EXPORTER", "otlp", "OTEL_METRICS_EXPORTER", "otlp")
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	rows := parseReport(t, out)
	for _, r := range rows {
		if !traceID.MatchString(r.trace) {
			t.Errorf("order %s: trace %q, want 32 hex digits", r.order, r.trace)
		}
		if hint := "open http://localhost:16686/trace/" + r.trace + "\n"; !strings.Contains(out, hint) {
			t.Errorf("report lacks %q:\n%s", hint, out)
		}
	}
	// run returned after telemetry's Shutdown, which flushed every span.
	traces := rc.received()
	checkTraces(t, rows, traces, "memory")
	rc.mu.Lock()
	services, metrics := rc.service, rc.metrics
	rc.mu.Unlock()
	if !services["necro-example-tracing"] || len(services) != 1 {
		t.Errorf("spans came from services %v, want necro-example-tracing", services)
	}
	// OTEL_METRICS_EXPORTER=otlp sends metrics to the same endpoint; the last collection went at Shutdown.
	if !metrics["necro.events.processed"] || !metrics["necro.handler.duration"] {
		t.Errorf("metrics received: %v; want necro.events.processed and necro.handler.duration among them", metrics)
	}

	// Each line an organ logs inside Handle names the process span it was logged in.
	spans := map[string]*tracepb.Span{}
	for _, ss := range traces {
		for _, s := range ss {
			spans[hex.EncodeToString(s.GetSpanId())] = s
		}
	}
	lines := organLines(t, stderr.String())
	if len(lines) != 6 {
		t.Errorf("organs logged %d lines, want 6 (3 for each shipped order):\n%s", len(lines), stderr.String())
	}
	for _, l := range lines {
		s := spans[l.SpanID]
		if s == nil {
			t.Errorf("log line %+v: no span %q was received", l, l.SpanID)
			continue
		}
		organ, _ := attr(s, "necro.organ")
		conv, _ := attr(s, "messaging.message.conversation_id")
		if hex.EncodeToString(s.GetTraceId()) != l.TraceID || organ != l.Organ || conv != l.CorrelationID {
			t.Errorf("log line %+v was logged in span %q of trace %x (organ %q, conversation %q)", l, s.GetName(),
				s.GetTraceId(), organ, conv)
		}
	}
}

// TestRunWithTelemetryOff checks that, with no OTEL_* variable set, the program works
// the same, prints no trace ids, and says how to turn tracing on; its logs still carry
// the flow's correlation and event ids.
func TestRunWithTelemetryOff(t *testing.T) {
	cleanEnv(t)
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, r := range parseReport(t, out) {
		if r.trace != "-" {
			t.Errorf("order %s: trace %q with tracing off, want -", r.order, r.trace)
		}
	}
	for _, want := range []string{"tracing is off", "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "16686/trace/") {
		t.Errorf("report links to traces with tracing off:\n%s", out)
	}
	lines := organLines(t, stderr.String())
	if len(lines) != 6 {
		t.Errorf("organs logged %d lines, want 6:\n%s", len(lines), stderr.String())
	}
	for _, l := range lines {
		if l.TraceID != "" || l.SpanID != "" || l.CorrelationID == "" || l.EventID == "" || l.Organ == "" {
			t.Errorf("log line %+v: want correlation_id, event_id and organ, and no trace_id or span_id", l)
		}
	}
}

// TestRunServesEndpoints runs the program with -metrics-addr and -serve, reads its
// /metrics, /healthz and /readyz while it serves, and interrupts it.
func TestRunServesEndpoints(t *testing.T) {
	cleanEnv(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-metrics-addr", "127.0.0.1:0", "-serve"}, pw, &stderr)
		pw.Close() // ends the reading below
		done <- err
	}()
	var addr string
	var report strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		report.WriteString(line + "\n")
		if a, ok := strings.CutPrefix(line, "serving /metrics, /healthz and /readyz on "); ok {
			addr = a
		}
		if line == "serving until interrupted" {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }() // whatever else run prints
	if addr == "" {
		cancel()
		t.Fatalf("run printed no address to serve on:\n%s\nrun() = %v; stderr:\n%s", report.String(), <-done, stderr.String())
	}
	parseReport(t, report.String())

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "spine: ok\n" {
		t.Errorf("GET /readyz = %d %q, want 200 \"spine: ok\\n\"", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d %q, want 200", code, body)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Errorf("GET /metrics = %d, want 200", code)
	}
	for _, want := range []string{
		`necro_events_processed_total{messaging_destination_name="memory",messaging_system="memory"`,
		`necro_events_dead_lettered_total{`,
		`necro_handler_duration_seconds_bucket{necro_organ="payment"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %q:\n%s", want, body)
		}
	}

	cancel() // as SIGINT does
	if err := <-done; err != nil {
		t.Errorf("run() after the interrupt = %v, want nil; stderr:\n%s", err, stderr.String())
	}
}

// TestRunOnRedis runs the flow on a throwaway Redis with tracing on: the traces are the
// same, their spans name Redis.
func TestRunOnRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{AppendOnly: true, Args: []string{"--maxmemory-policy", "noeviction"}})
	rc, url := startReceiver(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", url, "OTEL_TRACES_EXPORTER", "otlp", "OTEL_METRICS_EXPORTER", "none")
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), []string{"-redis", srv.URL()}, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	checkTraces(t, parseReport(t, stdout.String()), rc.received(), "redis")
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-no-such-flag"}, {"extra"}} {
		var stdout, stderr bytes.Buffer
		err := run(testContext(t), args, &stdout, &stderr)
		if !errors.As(err, new(usageError)) || stderr.Len() == 0 || stdout.Len() != 0 {
			t.Errorf("run(%q) = %v, stdout %q, stderr %q; want a usageError explained on stderr", args, err,
				stdout.String(), stderr.String())
		}
	}
}
