package spine_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/telemetry"
)

// BenchmarkChainTelemetry is the chain workload (R = 200,000 roots, 3 handlings each)
// with telemetry off, then on: spans exported in batches over OTLP/HTTP to a local
// receiver that reads and drops them, sampled at 1% of the roots or all of them, and
// metrics alone. The roots carry no trace context, so each A handling starts a trace
// and the sampler decides once per chain.
func BenchmarkChainTelemetry(b *testing.B) {
	const roots = 200_000
	b.Run("off", func(b *testing.B) { runWorkloadWith(b, chainMounts(), "a", roots, 3, spine.Config{}) })
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{"traces-1pct", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
		{"traces-all", sdktrace.AlwaysSample()},
	} {
		b.Run(c.name, func(b *testing.B) {
			rec := benchTracing(b, c.sampler)
			runWorkloadWith(b, chainMounts(), "a", roots, 3, spine.Config{Telemetry: rec})
		})
	}
	b.Run("metrics", func(b *testing.B) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		rec, err := telemetry.New(telemetry.Config{MeterProvider: mp, TracerProvider: tracenoop.NewTracerProvider()})
		if err != nil || !rec.Metering() || rec.Tracing() {
			b.Fatalf("telemetry.New = %v, %v; want metrics only", rec, err)
		}
		runWorkloadWith(b, chainMounts(), "a", roots, 3, spine.Config{Telemetry: rec})
	})
}

// benchTracing returns a Recorder whose spans go, in batches, over OTLP/HTTP to a
// receiver in this process that reads each request and drops it. The batch processor
// blocks rather than drops when its queue is full, so every sampled span is exported
// and paid for.
func benchTracing(b *testing.B, sampler sdktrace.Sampler) *telemetry.Recorder {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // the receiver's work is reading the batch
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	exp, err := otlptracehttp.New(b.Context(), otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(exp,
		sdktrace.WithMaxQueueSize(65_536), sdktrace.WithMaxExportBatchSize(2048), sdktrace.WithBlocking()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	rec, err := telemetry.New(telemetry.Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil || !rec.Tracing() {
		b.Fatalf("telemetry.New = %v, %v; want tracing on", rec, err)
	}
	return rec
}
