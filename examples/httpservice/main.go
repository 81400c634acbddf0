// Httpservice embeds a Spine in an HTTP service, the shape to copy into your own: the
// service takes orders over HTTP and organs in the same process handle them, with
// back-pressure, health endpoints, metrics, correlated logs and a shutdown that loses no
// order.
//
//	go run ./examples/httpservice                                 # on 127.0.0.1:8080, in-memory queue
//	go run ./examples/httpservice -redis redis://localhost:6379/0 # Redis Streams instead
//	go run ./examples/httpservice -capacity 20 -payment-latency 200ms  # slow payments: bursts get 503s
//
//	curl -i -d '{"customer":"ada","sku":"kbd-01","quantity":2}' localhost:8080/orders
//	curl localhost:8080/orders/<order_id>
//	curl localhost:8080/readyz; curl localhost:8080/metrics
//
// POST /orders checks the body and emits an order.placed event whose id is the order id
// (202 Accepted; 400 naming the field at fault; 503 with Retry-After when the queue is
// full). Inventory reserves the stock and emits stock.reserved, or order.rejected;
// billing charges the customer and emits payment.captured; the notifier tells the
// customer. GET /orders/{id} answers what they recorded.
//
// Traces and OTLP metrics come from the standard OTEL_* variables (docs/observability.md);
// /metrics is always served, for a Prometheus scrape.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/telemetry"
)

// redisStream keeps the example's events apart from the stream Python NecroStack and
// other programs share by default.
const redisStream = "necro:examples:httpservice"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Once the first signal has begun the shutdown, a second one kills the process the
	// default way, for whoever will not wait for the drain.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		os.Exit(2) // the flag package has already said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "httpservice:", err)
		os.Exit(1)
	}
}

// A usageError reports bad command-line arguments, already explained on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run is the whole service: it serves until ctx is canceled (main cancels it on SIGINT
// or SIGTERM), then shuts down and returns nil when no order was lost. listening, when
// not nil, is called with the address the service listens on once it takes requests,
// which tells a test that asked for port 0 where to connect.
func run(ctx context.Context, args []string, stderr io.Writer, listening func(addr string)) (err error) {
	fs := flag.NewFlagSet("httpservice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "serve HTTP on this `address`")
	redisURL := fs.String("redis", "", "use the Redis stream "+redisStream+" at this `URL` instead of the in-memory queue")
	capacity := fs.Int("capacity", 1000, "`events` the queue holds, and the Spine may have in progress; beyond that POST /orders answers 503")
	paymentLatency := fs.Duration("payment-latency", 0, "how long the stand-in payment provider takes to charge a card")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long a shutdown may take to finish the orders in progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected arguments: %q", fs.Args())
	case *capacity < 1:
		bad = fmt.Errorf("-capacity must be at least 1, got %d", *capacity)
	case *paymentLatency < 0:
		bad = fmt.Errorf("-payment-latency must not be negative, got %s", *paymentLatency)
	case *shutdownTimeout <= 0:
		bad = fmt.Errorf("-shutdown-timeout must be positive, got %s", *shutdownTimeout)
	}
	if bad != nil {
		fmt.Fprintln(stderr, bad)
		fs.Usage()
		return usageError{bad}
	}

	// Every line logged with a ctx inside a flow carries its correlation_id (the order
	// id), event_id, event_type and organ, and trace_id and span_id when tracing is on.
	log := telemetry.NewJSONLogger(stderr, slog.LevelInfo)

	providers, err := telemetry.Setup(ctx, telemetry.SetupConfig{ServiceName: "necro-example-httpservice", Prometheus: true})
	if err != nil {
		return err
	}
	defer func() {
		// Last of all: everything before still makes spans and metrics. It has a deadline
		// of its own, since ctx is canceled by now.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := providers.Shutdown(sctx); err != nil {
			log.ErrorContext(sctx, "telemetry not flushed", slog.Any("err", err))
		}
	}()

	ready := map[string]telemetry.Check{}
	var (
		q   backend.Backend
		mem *memory.Backend // nil on Redis
	)
	if *redisURL != "" {
		rq, err := redis.Open(ctx, redis.Config{URL: *redisURL, Stream: redisStream, Capacity: *capacity, Logger: log})
		if err != nil {
			return err // the password is masked
		}
		q, ready["redis"] = rq, rq.Ready
	} else {
		if mem, err = memory.New(memory.Config{Capacity: *capacity, Logger: log}); err != nil {
			return err
		}
		q = mem
	}
	defer func() { err = errors.Join(err, q.Close()) }()

	shop := newShop(log, *paymentLatency)
	sp, err := spine.New(q, shop.mounts(), spine.Config{
		Logger:    log,
		Telemetry: providers.Recorder(), // nil, recording nothing, when telemetry is off
		// No more events in progress than the queue holds, so that no follow-up is ever
		// refused: the queue takes follow-ups up to twice its capacity, and queued plus in
		// progress stays within capacity + window, since producers enqueue only below
		// capacity, a pull moves an event from the queue into progress, and each event
		// ends with at most one follow-up. That holds at shutdown too, when the Spine stops
		// pulling and the follow-ups of the events in progress pile up in the queue. A
		// refused follow-up would be dead-lettered and its order left unfinished. The
		// window also bounds the memory a burst of orders can take.
		Window: *capacity,
		// Serve ignores MaxSteps, but the drain at shutdown is a bounded Run: an order is
		// at most four events and no organ loops, so the shutdown deadline bounds it instead.
		MaxSteps: spine.Unlimited,
	})
	if err != nil {
		return err
	}
	ready["spine"] = sp.Ready

	mux := http.NewServeMux()
	(&api{sp: sp, shop: shop, log: log, tracer: otel.Tracer("github.com/necrostack/necro/examples/httpservice")}).routes(mux)
	ops := telemetry.Endpoints(telemetry.EndpointsConfig{Metrics: providers.MetricsHandler(), Ready: ready, Logger: log})
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(path, ops)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}

	// The Spine and the HTTP server run until ctx is canceled or one of them fails;
	// either way the shutdown below stops both and waits for them. Serve's ctx is not
	// ctx: cancelling it would stop the Spine at once and hand the events in flight back
	// unfinished, where Shutdown lets them finish. stopSpine is for a Serve that started
	// only after Shutdown had looked for it.
	running, stopRunning := context.WithCancel(ctx)
	defer stopRunning()
	spineCtx, stopSpine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSpine()
	var serveErr, httpErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stopRunning()
		serveErr = sp.Serve(spineCtx)
	})
	wg.Go(func() {
		defer stopRunning()
		httpErr = srv.Serve(ln) // closes ln when it returns
	})
	log.InfoContext(ctx, "listening", slog.String("addr", ln.Addr().String()), slog.Int("capacity", *capacity),
		slog.Bool("tracing", providers.Tracing()))
	if listening != nil {
		listening(ln.Addr().String())
	}
	<-running.Done()
	log.InfoContext(ctx, "shutting down", slog.Int("unfinished", shop.unfinished()))

	// The order of the steps is what loses nothing. One deadline covers them all.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *shutdownTimeout)
	defer cancel()
	var errs []error
	// 1. Stop taking orders first: Shutdown closes the listener and waits for the
	// requests in flight, so every order answered 202 has been emitted before the Spine
	// stops, and none arrives while it drains. One that came after would be lost with
	// the in-memory queue, or wait in Redis for the next worker.
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down http: %w", errors.Join(err, srv.Close())))
	}
	// 2. Then the Spine: it stops pulling, lets the events in flight finish, and settles
	// them with their follow-ups. Past the deadline it stops at once and the events in
	// flight go back to the queue unsettled.
	if err := sp.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down spine: %w", err))
	}
	stopSpine()
	wg.Wait()
	if httpErr != nil && !errors.Is(httpErr, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("http: %w", httpErr))
	}
	if serveErr != nil {
		errs = append(errs, fmt.Errorf("spine: %w", serveErr))
	}
	// 3. The in-memory queue dies with the process. What it still holds (orders accepted
	// but not pulled yet, the follow-ups of the last events) is handled now by a bounded
	// Run, which returns once the queue is empty and nothing is in flight. A Redis stream
	// keeps it for the next worker to take.
	if mem != nil {
		if err := sp.Run(sctx); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
		if !mem.Idle() {
			errs = append(errs, fmt.Errorf("drain: %d events left in the in-memory queue are lost", mem.Len()))
		}
		if n := shop.unfinished(); n > 0 {
			errs = append(errs, fmt.Errorf("drain: %d orders left unfinished", n))
		}
	}
	counts := shop.counts()
	log.InfoContext(ctx, "stopped", slog.Int("confirmed", counts[statusConfirmed]), slog.Int("rejected", counts[statusRejected]),
		slog.Int("unfinished", shop.unfinished()))
	// 4. The deferred calls then close the queue and, last, flush the telemetry.
	return errors.Join(errs...)
}
