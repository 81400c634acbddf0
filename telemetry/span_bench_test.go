package telemetry_test

import (
	"context"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// BenchmarkProcess measures one process span, started and ended as the Spine does, for
// a root event under 1% sampling (the sampler decides), a child of an unsampled trace
// (no span at all), and a child of a sampled trace (recorded, then dropped by a
// processor that keeps nothing).
func BenchmarkProcess(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	rec, err := telemetry.New(telemetry.Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil {
		b.Fatal(err)
	}
	dest := &telemetry.Destination{System: "memory", Name: "memory"}
	root, _ := necro.NewEvent("a", nil)
	child, _ := necro.NewEvent("b", nil)
	unsampled := child.WithTraceContext(necro.TraceContext{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
	sampled := child.WithTraceContext(necro.TraceContext{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	for _, c := range []struct {
		name string
		ev   necro.Event
	}{{"root-1pct", root}, {"unsampled-child", unsampled}, {"sampled-child", sampled}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				start := time.Now()
				_, span := rec.Process(ctx, dest, c.ev, "A", start)
				_ = span.TraceContext()
				span.Settled("ack", "")
				span.End(time.Microsecond, 1)
			}
		})
	}
}
