package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// A Check reports a problem, or nil when all is well. It should return once ctx is
// done. Its error is served to whoever asks, so it must not carry secrets: mask
// passwords and tokens, in URLs too.
type Check func(ctx context.Context) error

// EndpointsConfig says what [Endpoints] serves. The zero value serves /healthz and
// /readyz that always pass, and no /metrics.
type EndpointsConfig struct {
	Metrics http.Handler     // served at /metrics, such as [Providers.MetricsHandler]; nil: 404
	Live    map[string]Check // /healthz: the process works; a failure asks for a restart
	Ready   map[string]Check // /readyz: the process can take work now
	// CheckTimeout bounds the checks of one request; zero means 2s. A check still
	// running then fails.
	CheckTimeout time.Duration
	Logger       *slog.Logger // the server's own errors, such as broken connections; nil discards them
}

const (
	defaultCheckTimeout = 2 * time.Second
	// shutdownGrace bounds the wait for requests in flight when Serve stops; longer
	// requests are cut.
	shutdownGrace = 5 * time.Second
)

// Endpoints returns a handler serving /metrics, /healthz and /readyz to GET and HEAD.
//
// /healthz and /readyz run their checks concurrently, each request within
// CheckTimeout, and answer 200 when all pass and 503 otherwise. The plain-text body
// has one line per check, sorted by name: "<name>: ok" or "<name>: fail: <error>";
// with no checks it is "ok". A check that ignores its ctx holds its request up.
func Endpoints(cfg EndpointsConfig) http.Handler {
	timeout := cfg.CheckTimeout
	if timeout <= 0 {
		timeout = defaultCheckTimeout
	}
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("/metrics", cfg.Metrics)
	}
	mux.Handle("GET /healthz", checksHandler(cfg.Live, timeout))
	mux.Handle("GET /readyz", checksHandler(cfg.Ready, timeout))
	return mux
}

// namedCheck is a Check with its name, so that checks run in their name's order.
type namedCheck struct {
	name  string
	check Check
}

func checksHandler(checks map[string]Check, timeout time.Duration) http.Handler {
	list := make([]namedCheck, 0, len(checks))
	for name, c := range checks {
		list = append(list, namedCheck{name, c})
	}
	slices.SortFunc(list, func(a, b namedCheck) int { return strings.Compare(a.name, b.name) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := runChecks(r.Context(), list, timeout)
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(body) // a client gone away is not ours to report
	})
}

// runChecks runs every check concurrently within timeout and returns the body of the
// report and whether all passed.
func runChecks(ctx context.Context, checks []namedCheck, timeout time.Duration) ([]byte, bool) {
	if len(checks) == 0 {
		return []byte("ok\n"), true
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = runCheck(ctx, c.check) })
	}
	wg.Wait()
	var b strings.Builder
	ok := true
	for i, c := range checks {
		b.WriteString(oneLine(c.name))
		if err := errs[i]; err != nil {
			ok = false
			if ctx.Err() != nil {
				err = fmt.Errorf("timed out after %s: %w", timeout, err)
			}
			b.WriteString(": fail: ")
			b.WriteString(oneLine(err.Error()))
		} else {
			b.WriteString(": ok")
		}
		b.WriteByte('\n')
	}
	return []byte(b.String()), ok
}

// runCheck runs c, turning a panic into a failure: one broken check must not take the
// endpoint down.
func runCheck(ctx context.Context, c Check) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("check panicked: %v", v)
		}
	}()
	if c == nil {
		return errors.New("no check function")
	}
	return c(ctx)
}

// oneLine keeps a check's report on its own line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// ListenAndServe serves [Endpoints] on the TCP address addr until ctx is done, as
// [Serve] does. It returns at once with an error when addr cannot be bound.
func ListenAndServe(ctx context.Context, addr string, cfg EndpointsConfig) error {
	ln, err := net.Listen("tcp", addr) // binding does not wait, so ctx need not bound it
	if err != nil {
		return fmt.Errorf("telemetry: listen on %s: %w", addr, err)
	}
	return Serve(ctx, ln, cfg)
}

// Serve serves [Endpoints] on ln until ctx is done, then shuts the server down: it
// waits up to 5s for requests in flight and cuts the rest. It closes ln, and returns
// only once the server has stopped: nil after ctx is done and every request finished,
// an error when serving failed or requests were cut.
func Serve(ctx context.Context, ln net.Listener, cfg EndpointsConfig) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           Endpoints(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1) // the serving goroutine never waits to hand over its result
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("telemetry: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("telemetry: shut down endpoints on %s: %w", ln.Addr(), err), srv.Close())
	}
	<-served // http.ErrServerClosed, now that Shutdown has begun
	return err
}
