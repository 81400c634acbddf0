package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// cleanEnv unsets every OTEL_* variable for the test, sets the given ones, and puts
// otel's global providers back to no-ops afterwards, since Setup sets them.
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

// userGlobals makes real SDK providers otel's globals, as a program may have done
// before Setup; cleanEnv puts no-ops back.
func userGlobals(t *testing.T) {
	t.Helper()
	tp, mp := sdktrace.NewTracerProvider(), sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		if err := errors.Join(tp.Shutdown(context.Background()), mp.Shutdown(context.Background())); err != nil {
			t.Error(err)
		}
	})
}

func setup(t *testing.T, cfg telemetry.SetupConfig) *telemetry.Providers {
	t.Helper()
	p, err := telemetry.Setup(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Setup(%+v) = %v", cfg, err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) }) // a no-op after the test's own Shutdown
	return p
}

func newEvent(t *testing.T) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent("order.placed", map[string]any{"id": 1})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestSetupOffByDefault(t *testing.T) {
	tests := []struct {
		name string
		env  []string
	}{
		{"nothing set", nil},
		{"sdk disabled", []string{"OTEL_SDK_DISABLED", "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318",
			"OTEL_TRACES_EXPORTER", "otlp", "OTEL_METRICS_EXPORTER", "otlp,prometheus"}},
		{"exporters none", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318",
			"OTEL_TRACES_EXPORTER", "none", "OTEL_METRICS_EXPORTER", "none"}},
		{"explicit false", []string{"OTEL_SDK_DISABLED", "false"}},
		{"protocol of a signal that is off", []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t, tt.env...)
			p := setup(t, telemetry.SetupConfig{})
			if p.Recorder() != nil || p.Tracing() || p.Metering() || p.MetricsHandler() != nil {
				t.Errorf("env %q: Recorder() = %v, Tracing() = %v, Metering() = %v, MetricsHandler() = %v; want all off",
					tt.env, p.Recorder(), p.Tracing(), p.Metering(), p.MetricsHandler())
			}
			if err := p.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown() = %v, want nil", err)
			}
			if err := p.Shutdown(t.Context()); err != nil {
				t.Errorf("second Shutdown() = %v, want nil", err)
			}
		})
	}
}

func TestSetupRejectsUnsupportedValues(t *testing.T) {
	tests := []struct {
		env  []string
		want []string // in the error
	}{
		{[]string{"OTEL_TRACES_EXPORTER", "zipkin"}, []string{"OTEL_TRACES_EXPORTER", `"zipkin"`, "otlp"}},
		{[]string{"OTEL_METRICS_EXPORTER", "otlp,console"}, []string{"OTEL_METRICS_EXPORTER", `"console"`, "prometheus"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
			[]string{"OTEL_EXPORTER_OTLP_PROTOCOL", `"http/json"`, "grpc", "http/protobuf"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"},
			[]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", `"thrift"`}},
		{[]string{"OTEL_METRICS_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"},
			[]string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", `"http/json"`}},
		{[]string{"OTEL_SDK_DISABLED", "1"}, []string{"OTEL_SDK_DISABLED", `"1"`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, " "), func(t *testing.T) {
			cleanEnv(t, tt.env...)
			p, err := telemetry.Setup(t.Context(), telemetry.SetupConfig{})
			if err == nil {
				_ = p.Shutdown(t.Context())
				t.Fatalf("env %q: Setup() = nil error, want one naming %q", tt.env, tt.want)
			}
			if p != nil {
				t.Errorf("env %q: Setup() = %v, %v; want nil Providers with the error", tt.env, p, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("env %q: Setup() error %q does not name %q", tt.env, err, w)
				}
			}
		})
	}
}

// collector is an OTLP receiver over HTTP and gRPC that keeps what it is sent.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer

	mu      sync.Mutex
	traces  []*collectortrace.ExportTraceServiceRequest     // guarded by mu
	metrics []*collectormetrics.ExportMetricsServiceRequest // guarded by mu
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.traces = append(c.traces, req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var resp proto.Message
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf":
		http.Error(w, "want a POST of application/x-protobuf", http.StatusBadRequest)
		return
	case r.URL.Path == "/v1/traces":
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.traces = append(c.traces, req)
		c.mu.Unlock()
		resp = &collectortrace.ExportTraceServiceResponse{}
	case r.URL.Path == "/v1/metrics":
		req := &collectormetrics.ExportMetricsServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.metrics = append(c.metrics, req)
		c.mu.Unlock()
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
	_, _ = w.Write(out)
}

// spans returns "<service.name>/<span name>" of every span received.
func (c *collector) spans() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, req := range c.traces {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, service+"/"+s.GetName())
				}
			}
		}
	}
	return out
}

// metricNames returns the names of every metric received.
func (c *collector) metricNames() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, req := range c.metrics {
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					out[m.GetName()] = true
				}
			}
		}
	}
	return out
}

func startHTTPCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func startGRPCCollector(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("grpc Serve() = %v", err)
		}
	})
	return c, "http://" + ln.Addr().String()
}

// sendOne records one send span through p's Recorder and shuts p down, which flushes it.
func sendOne(t *testing.T, p *telemetry.Providers) {
	t.Helper()
	rec := p.Recorder()
	if !rec.Tracing() {
		t.Fatalf("Recorder().Tracing() = false with tracing on")
	}
	_, span, out := rec.Send(t.Context(), telemetry.Destination{System: "memory", Name: "q"}, []necro.Event{newEvent(t)})
	if out[0].TraceContext().IsZero() {
		t.Errorf("Send() gave the event no trace context")
	}
	span.EndErr(nil)
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

func TestSetupExportsSpansOverOTLP(t *testing.T) {
	tests := []struct {
		name     string
		start    func(*testing.T) (*collector, string)
		protocol string
	}{
		{"http/protobuf", startHTTPCollector, ""}, // the default protocol
		{"grpc", startGRPCCollector, "grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, endpoint := tt.start(t)
			cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint, "OTEL_TRACES_EXPORTER", "otlp",
				"OTEL_METRICS_EXPORTER", "none", "OTEL_EXPORTER_OTLP_PROTOCOL", tt.protocol)
			userGlobals(t)
			p := setup(t, telemetry.SetupConfig{ServiceName: "shop"})
			if !p.Tracing() || p.Metering() {
				t.Errorf("Tracing(), Metering() = %v, %v; want true, false", p.Tracing(), p.Metering())
			}
			if p.Recorder().Metering() {
				t.Errorf("Recorder().Metering() = true with metrics off: it took a global meter provider")
			}
			sendOne(t, p)
			if got := c.spans(); len(got) != 1 || got[0] != "shop/send q" {
				t.Errorf("collector got spans %q, want [shop/send q]", got)
			}
		})
	}
}

func TestSetupServiceNameFromEnvWins(t *testing.T) {
	c, endpoint := startHTTPCollector(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint+"/v1/traces", "OTEL_SERVICE_NAME", "billing")
	sendOne(t, setup(t, telemetry.SetupConfig{ServiceName: "shop"}))
	if got := c.spans(); len(got) != 1 || got[0] != "billing/send q" {
		t.Errorf("collector got spans %q, want [billing/send q]", got)
	}
}

func TestSetupSamplerFromEnv(t *testing.T) {
	c, endpoint := startHTTPCollector(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint, "OTEL_METRICS_EXPORTER", "none",
		"OTEL_TRACES_SAMPLER", "always_off")
	sendOne(t, setup(t, telemetry.SetupConfig{}))
	if got := c.spans(); len(got) != 0 {
		t.Errorf("collector got spans %q with OTEL_TRACES_SAMPLER=always_off, want none", got)
	}
}

func TestSetupExportsMetricsOverOTLP(t *testing.T) {
	c, endpoint := startHTTPCollector(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint, "OTEL_TRACES_EXPORTER", "none", "OTEL_METRICS_EXPORTER", "otlp")
	userGlobals(t)
	p := setup(t, telemetry.SetupConfig{})
	if p.Tracing() || !p.Metering() || p.MetricsHandler() != nil {
		t.Errorf("Tracing(), Metering(), MetricsHandler() = %v, %v, %v; want false, true, nil",
			p.Tracing(), p.Metering(), p.MetricsHandler())
	}
	rec := p.Recorder()
	if rec.Tracing() {
		t.Errorf("Recorder().Tracing() = true with tracing off: it took a global tracer provider")
	}
	rec.Handled(t.Context(), newEvent(t), "billing", 3*time.Millisecond, nil)
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if got := c.metricNames(); !got["necro.handler.duration"] {
		t.Errorf("collector got metrics %v, want necro.handler.duration among them", got)
	}
}

// The general endpoint alone turns tracing on, not OTLP metrics: it is most often
// Jaeger, which refuses them. A metrics endpoint of its own turns them on.
func TestSetupEndpointAloneMeansTracesOnly(t *testing.T) {
	c, endpoint := startHTTPCollector(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	p := setup(t, telemetry.SetupConfig{})
	if !p.Tracing() || p.Metering() {
		t.Fatalf("with only OTEL_EXPORTER_OTLP_ENDPOINT: Tracing(), Metering() = %v, %v; want true, false", p.Tracing(), p.Metering())
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := c.metricNames(); len(got) != 0 {
		t.Errorf("collector got metrics %v, want none", got)
	}
	cleanEnv(t, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint+"/v1/metrics")
	p = setup(t, telemetry.SetupConfig{})
	if !p.Metering() {
		t.Errorf("with OTEL_EXPORTER_OTLP_METRICS_ENDPOINT set: Metering() = false, want true")
	}
}

func TestSetupSetsGlobals(t *testing.T) {
	_, endpoint := startHTTPCollector(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	setup(t, telemetry.SetupConfig{})
	_, span := otel.Tracer("user").Start(t.Context(), "mine")
	defer span.End()
	if !span.SpanContext().IsValid() {
		t.Errorf("a span from otel's global tracer provider is a no-op after Setup")
	}
	if f := otel.GetTextMapPropagator().Fields(); !strings.Contains(strings.Join(f, ","), "traceparent") ||
		!strings.Contains(strings.Join(f, ","), "baggage") {
		t.Errorf("global propagator fields = %q, want traceparent and baggage", f)
	}
}

func TestSetupPrometheus(t *testing.T) {
	// OTEL_SDK_DISABLED turns off what the environment asks for, not what the program does.
	cleanEnv(t, "OTEL_SDK_DISABLED", "true")
	p := setup(t, telemetry.SetupConfig{Prometheus: true})
	rec := p.Recorder()
	if !rec.Metering() || rec.Tracing() || p.MetricsHandler() == nil {
		t.Fatalf("Recorder().Metering(), Tracing(), MetricsHandler() = %v, %v, %v; want true, false, a handler",
			rec.Metering(), rec.Tracing(), p.MetricsHandler())
	}
	stop, err := rec.Observe(telemetry.Destination{System: "memory", Name: "q"}, func(context.Context) (telemetry.Figures, bool) {
		return telemetry.Figures{Processed: 7, Failed: map[string]int64{"billing": 2}, QueueDepth: 3,
			Pending: -1, DeadLetterDepth: -1, Reconnections: -1}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rec.Handled(t.Context(), newEvent(t), "billing", 3*time.Millisecond, nil)

	w := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %q", w.Code, body)
	}
	for _, want := range []string{
		`necro_events_processed_total{messaging_destination_name="q",messaging_system="memory",otel_scope_name="github.com/necrostack/necro",otel_scope_schema_url="",otel_scope_version=""} 7`,
		`necro_handler_failures_total{messaging_destination_name="q",messaging_system="memory",necro_organ="billing",otel_scope_name="github.com/necrostack/necro",otel_scope_schema_url="",otel_scope_version=""} 2`,
		`necro_queue_depth{messaging_destination_name="q",messaging_system="memory",otel_scope_name="github.com/necrostack/necro",otel_scope_schema_url="",otel_scope_version=""} 3`,
		`necro_handler_duration_seconds_bucket{necro_organ="billing",otel_scope_name="github.com/necrostack/necro",otel_scope_schema_url="",otel_scope_version="",le="0.005"} 1`,
		`necro_handler_duration_seconds_bucket{necro_organ="billing",otel_scope_name="github.com/necrostack/necro",otel_scope_schema_url="",otel_scope_version="",le="0.001"} 0`,
		`necro_handler_duration_seconds_count{necro_organ="billing",otel_scope_name="github.com/necrostack/necro",otel_scope_schema_url="",otel_scope_version=""} 1`,
		`target_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %s; got:\n%s", want, body)
		}
	}
	for _, absent := range []string{"necro_queue_pending", "necro_backend_reconnections"} {
		if strings.Contains(body, absent) {
			t.Errorf("GET /metrics has %s, reported as unknown (-1); got:\n%s", absent, body)
		}
	}
}

func TestSetupPrometheusWithTracing(t *testing.T) {
	_, endpoint := startHTTPCollector(t)
	cleanEnv(t, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint+"/v1/traces")
	p := setup(t, telemetry.SetupConfig{Prometheus: true})
	rec := p.Recorder()
	if !rec.Tracing() || !rec.Metering() {
		t.Fatalf("Recorder().Tracing(), Metering() = %v, %v; want both on", rec.Tracing(), rec.Metering())
	}
	ev := newEvent(t)
	ctx, span := rec.Process(t.Context(), &telemetry.Destination{System: "memory", Name: "q"}, ev, "billing", time.Now())
	rec.Handled(span.Context(ctx), ev, "billing", 3*time.Millisecond, nil)
	span.End(3*time.Millisecond, 0)

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	w := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(w, req)
	body := w.Body.String()
	parts := strings.Split(span.TraceContext().Parent, "-") // 00-<trace id>-<span id>-01
	if len(parts) != 4 {
		t.Fatalf("span's traceparent = %q", span.TraceContext().Parent)
	}
	// The exemplar follows the bucket its value fell in; the order of its labels varies.
	var exemplar string
	for line := range strings.Lines(body) {
		if _, e, ok := strings.Cut(line, `le="0.005"} 1 # `); ok && strings.HasPrefix(line, "necro_handler_duration_seconds_bucket{") {
			exemplar = e
		}
	}
	for _, want := range []string{fmt.Sprintf("trace_id=%q", parts[1]), fmt.Sprintf("span_id=%q", parts[2]),
		fmt.Sprintf("correlation_id=%q", ev.Correlation()), "} 0.003 "} {
		if !strings.Contains(exemplar, want) {
			t.Errorf("GET /metrics (OpenMetrics): the exemplar of the 0.005s bucket lacks %s; got:\n%s", want, body)
		}
	}
	// The correlation id is in the exemplars only, never a series label.
	for line := range strings.Lines(body) {
		series, _, _ := strings.Cut(line, " # ")
		if strings.Contains(series, "correlation_id") || strings.Contains(series, "conversation_id") {
			t.Errorf("GET /metrics (OpenMetrics): a series is labelled with the correlation id: %s", line)
		}
	}
}
