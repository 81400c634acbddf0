// Tracing runs a small checkout flow with telemetry on, the way a service embedding
// necro would: each order is a trace that starts in a span of the program's own and
// follows the order through every organ, with JSON logs that carry the same ids.
//
//	go run ./examples/tracing                      # telemetry off: the run, and how to turn it on
//	OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
//	    go run ./examples/tracing                  # traces to a local Jaeger
//	go run ./examples/tracing -metrics-addr localhost:9464 -serve  # curl /metrics and /readyz; Ctrl-C stops
//	go run ./examples/tracing -redis redis://localhost:6379/0       # Redis Streams instead of memory
//
// Telemetry comes from the standard OTEL_* environment variables (see
// docs/observability.md); with none set it is off and costs nothing.
//
// The flow: payment handles order.placed, charges the card (a client span of its own)
// and emits payment.captured; shipping books a shipment and emits shipment.scheduled;
// notify tells the customer. The card processor cannot handle one of the cards, so
// that order's payment fails on all three attempts and is dead-lettered: its trace shows
// the failed attempts side by side and the error.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// redisStream keeps the example's events apart from the stream Python NecroStack and
// other programs share by default.
const redisStream = "necro:examples:tracing"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		os.Exit(2) // the flag package has already said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

// A usageError reports bad command-line arguments, already explained on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run is the whole program: main only turns signals into ctx and the error into an
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("tracing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis", "", "use the Redis stream "+redisStream+" at this `URL` instead of the in-memory backend")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics, /healthz and /readyz on this `address`, such as localhost:9464")
	serve := fs.Bool("serve", false, "once the orders are done, go on serving until interrupted")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments: %q", fs.Args())
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return usageError{err}
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	// Every line logged with a ctx inside a flow carries its trace_id, span_id,
	// correlation_id, event_id, event_type and organ.
	log := telemetry.NewJSONLogger(stderr, level)

	// Traces and metrics as the OTEL_* environment says; Prometheus because we serve
	// /metrics ourselves.
	providers, err := telemetry.Setup(ctx, telemetry.SetupConfig{ServiceName: "necro-example-tracing",
		Prometheus: *metricsAddr != ""})
	if err != nil {
		return err
	}
	defer func() {
		// Shutdown flushes the spans still buffered. It gets its own deadline: after an
		// interrupt, ctx is already canceled and the spans are wanted all the more. An
		// export that fails is logged, not returned: the orders were handled all the same.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := providers.Shutdown(sctx); err != nil {
			log.ErrorContext(sctx, "telemetry not flushed", slog.Any("err", err))
		}
	}()

	ready := map[string]telemetry.Check{}
	var q store
	if *redisURL != "" {
		rq, err := redis.Open(ctx, redis.Config{URL: *redisURL, Stream: redisStream, Logger: log})
		if err != nil {
			return err // the password is masked
		}
		q, ready["redis"] = rq, rq.Ready
	} else {
		mq, err := memory.New(memory.Config{Logger: log})
		if err != nil {
			return err
		}
		q = mq
	}
	defer func() { err = errors.Join(err, q.Close()) }()

	tracer := otel.Tracer("example") // the global provider, which Setup has set
	notify := newNotifier(log)
	mounts := []necro.Mount{
		{Name: "payment", Organ: necro.NewOrgan([]string{typeOrderPlaced}, (&payments{log: log, tracer: tracer}).handle)},
		{Name: "shipping", Organ: necro.NewOrgan([]string{typePaymentCaptured}, (&shipping{log: log}).handle)},
		{Name: "notify", Organ: necro.NewOrgan([]string{typeShipmentScheduled}, notify.handle)},
	}
	sp, err := spine.New(q, mounts, spine.Config{
		Logger:    log,
		Telemetry: providers.Recorder(), // nil, recording nothing, when telemetry is off
		// The default, spelled out: three attempts in all, 10ms apart and doubling.
		Retry: supervision.RetryPolicy{MaxAttempts: 3, Backoff: supervision.Backoff{Base: 10 * time.Millisecond}},
	})
	if err != nil {
		return err
	}
	ready["spine"] = sp.Ready

	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "serving /metrics, /healthz and /readyz on http://%s\n", ln.Addr())
		sctx, stopServing := context.WithCancel(ctx)
		served := make(chan error, 1) // Serve's result waits here until we collect it
		go func() {
			served <- telemetry.Serve(sctx, ln, telemetry.EndpointsConfig{
				Metrics: providers.MetricsHandler(), Ready: ready, Logger: log})
		}()
		defer func() {
			stopServing()
			err = errors.Join(err, <-served)
		}()
	}

	roots := make([]root, len(sampleOrders))
	for i, o := range sampleOrders {
		if roots[i], err = checkout(ctx, tracer, sp, o); err != nil {
			return err
		}
	}
	if err := sp.Run(ctx); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	// Run returns nil when ctx is canceled too; the orders are then unfinished.
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	if err := report(stdout, roots, notify, dead, sp.Stats(), providers.Tracing()); err != nil {
		return err
	}

	if *serve {
		fmt.Fprintln(stdout, "serving until interrupted")
		return sp.Serve(ctx)
	}
	return nil
}

// A store is a backend that keeps dead letters where the program can read them, as
// both of necro's backends do.
type store interface {
	backend.Backend
	DeadLetters(ctx context.Context, max int) ([]backend.DeadLetter, error)
}

// A root is one order placed, and where to find what became of it.
type root struct {
	order
	correlation string        // the correlation id of every event of its flow
	traceID     trace.TraceID // invalid when tracing is off
}

// checkout places one order inside a span of the program's own, "checkout", which is
// then the root of the order's trace: Emit's send span is its child, and every handling
// that follows from the order descends from that.
func checkout(ctx context.Context, tracer trace.Tracer, sp *spine.Spine, o order) (_ root, err error) {
	ctx, span := tracer.Start(ctx, "checkout", trace.WithAttributes(attribute.String("order.id", o.OrderID),
		attribute.String("customer", o.Customer)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	ev, err := necro.NewEvent(typeOrderPlaced, o)
	if err != nil {
		return root{}, fmt.Errorf("order %s: %w", o.OrderID, err)
	}
	if err := sp.Emit(ctx, ev); err != nil {
		return root{}, fmt.Errorf("place order %s: %w", o.OrderID, err)
	}
	return root{order: o, correlation: ev.Correlation(), traceID: span.SpanContext().TraceID()}, nil
}

// report prints one line per order, with its trace id and what became of it, then the
// Spine's counts and where to look at the traces.
func report(w io.Writer, roots []root, notify *notifier, dead []backend.DeadLetter, stats spine.Stats, tracing bool) error {
	deadByFlow := map[string]backend.DeadLetter{}
	for _, dl := range dead {
		if !dl.Event.IsZero() {
			deadByFlow[dl.Event.Correlation()] = dl
		}
	}
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("%-7s %-32s  %s", "order", "trace", "outcome")
	for _, r := range roots {
		id := "-"
		if r.traceID.IsValid() {
			id = r.traceID.String()
		}
		outcome := "unfinished"
		if nt, ok := notify.noticeFor(r.correlation); ok {
			outcome = fmt.Sprintf("shipped as %s, %s notified", nt.ShipmentID, nt.Customer)
		} else if dl, ok := deadByFlow[r.correlation]; ok {
			outcome = fmt.Sprintf("dead-lettered by %s after %d attempts: %s", dl.Organ, dl.Attempts, dl.Error)
		}
		p("%-7s %-32s  %s", r.OrderID, id, outcome)
	}
	p("spine: processed %d, emitted %d, retried %d, dead-lettered %d",
		stats.Processed, stats.Emitted, stats.Retried, stats.DeadLettered)
	if !tracing {
		p("tracing is off; to see each order as a trace, start Jaeger and run again with")
		p("  OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318")
		p("(see docs/observability.md)")
	} else {
		p("each order is one trace; in Jaeger:")
		for _, r := range roots {
			if r.traceID.IsValid() {
				p("  open http://localhost:16686/trace/%s", r.traceID)
			}
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
