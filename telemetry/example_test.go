package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// flowEvent returns the event an inventory organ emitted while handling an order: its
// correlation id is the order's id, and its own id is derived from it.
func flowEvent() necro.Event {
	order, err := necro.Draft{
		ID:        "550e8400-e29b-41d4-a716-446655440000",
		Type:      "order.placed",
		Timestamp: time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC),
	}.Build()
	if err != nil {
		panic(err)
	}
	reserved, err := necro.Draft{Type: "stock.reserved", Timestamp: order.Timestamp()}.Build()
	if err != nil {
		panic(err)
	}
	return reserved.EmittedBy(order, "inventory", 0, necro.TraceContext{})
}

func ExampleNewJSONLogger() {
	var buf bytes.Buffer
	log := telemetry.NewJSONLogger(&buf, slog.LevelInfo)

	// Organs get a ctx like this one in Handle; WithFlow makes one anywhere else.
	ctx := telemetry.WithFlow(context.Background(), telemetry.Flow{Event: flowEvent(), Organ: "billing"})
	log.InfoContext(ctx, "payment captured", slog.Int("amount_cents", 9800))
	log.DebugContext(ctx, "below the level: not written")
	log.Info("no ctx, no flow ids")

	// The lines carry the time of day; the example leaves it out.
	fmt.Print(regexp.MustCompile(`"time":"[^"]*",`).ReplaceAllString(buf.String(), ""))
	// Output:
	// {"level":"INFO","msg":"payment captured","amount_cents":9800,"correlation_id":"550e8400-e29b-41d4-a716-446655440000","event_id":"13b4963e-bd94-47b9-b5bb-a481c0a44d5a","event_type":"stock.reserved","organ":"billing"}
	// {"level":"INFO","msg":"no ctx, no flow ids"}
}

// NewLogHandler adds the flow's ids to any handler, here a JSON handler without the
// time. An event created inside a trace names it even where no span is at hand (with
// tracing off, say): the line then carries the trace id and span id of its creation.
// The ids stay at the top level when the logger has a group.
func ExampleNewLogHandler() {
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // drop the time, for a stable output
			}
			return a
		},
	})))

	ev := flowEvent().WithTraceContext(necro.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	ctx := telemetry.WithFlow(context.Background(), telemetry.Flow{Event: ev})
	log.WarnContext(ctx, "stock low", slog.String("sku", "kbd-01"))
	log.With(slog.String("component", "api")).WithGroup("request").InfoContext(ctx, "order accepted",
		slog.String("method", "POST"))
	// Output:
	// {"level":"WARN","msg":"stock low","sku":"kbd-01","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","correlation_id":"550e8400-e29b-41d4-a716-446655440000","event_id":"13b4963e-bd94-47b9-b5bb-a481c0a44d5a","event_type":"stock.reserved"}
	// {"level":"INFO","msg":"order accepted","component":"api","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","correlation_id":"550e8400-e29b-41d4-a716-446655440000","event_id":"13b4963e-bd94-47b9-b5bb-a481c0a44d5a","event_type":"stock.reserved","request":{"method":"POST"}}
}

// With none of the OTEL_* variables set, Setup turns nothing on and costs nothing: the
// Recorder is nil, and a nil Recorder is a valid one that records nothing.
func ExampleSetup() {
	ctx := context.Background()
	providers, err := telemetry.Setup(ctx, telemetry.SetupConfig{ServiceName: "orders"})
	if err != nil {
		fmt.Println(err) // an unsupported value, named with its variable
		return
	}
	rec := providers.Recorder()
	fmt.Println("recorder:", rec)
	fmt.Println("tracing:", providers.Tracing(), rec.Tracing())
	fmt.Println("metering:", providers.Metering(), rec.Metering())
	fmt.Println("metrics handler:", providers.MetricsHandler())
	fmt.Println("shutdown:", providers.Shutdown(ctx))
	// Output:
	// recorder: <nil>
	// tracing: false false
	// metering: false false
	// metrics handler: <nil>
	// shutdown: <nil>
}

func ExampleEndpoints() {
	h := telemetry.Endpoints(telemetry.EndpointsConfig{
		Ready: map[string]telemetry.Check{
			"queue": func(context.Context) error { return nil },
			"spine": func(context.Context) error { return errors.New("spine: draining") },
		},
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		fmt.Printf("GET %s: %d\n%s", path, rec.Code, rec.Body)
	}
	// Output:
	// GET /healthz: 200
	// ok
	// GET /readyz: 503
	// queue: ok
	// spine: fail: spine: draining
	// GET /metrics: 404
	// 404 page not found
}
