package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/telemetry"
)

// newFlags returns a flag set for one command, printing its usage to e's stderr.
func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("necro-actors "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: necro-actors %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs, and allows positional arguments before, between and after
// the flags (the flag package stops at the first one): `run etl --redis URL` works. It
// returns the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// redisFlags are the connection flags of every command that talks to Redis.
type redisFlags struct {
	url, urlFile, stream, group, consumer string
	// urlGiven and fileGiven tell a flag given empty, as an unset shell variable gives
	// it, from one not given: the first is an error, never a fall back to
	// NECRO_REDIS_URL (another server) or to memory.
	urlGiven, fileGiven bool
}

func (r *redisFlags) register(fs *flag.FlagSet) {
	fs.Var(&givenString{&r.url, &r.urlGiven}, "redis", "Redis `URL` (redis:// or rediss://); default $NECRO_REDIS_URL")
	fs.Var(&givenString{&r.urlFile, &r.fileGiven}, "redis-url-file", "read the Redis URL from this `file`, so no password is on the command line")
	fs.StringVar(&r.stream, "stream", "", "stream `name` (default necrostack:events)")
	fs.StringVar(&r.group, "group", "", "consumer group `name` (default necrostack)")
	fs.StringVar(&r.consumer, "consumer", "", "consumer `name` in the group (default: consumer- and 8 random hex digits); a name kept across restarts takes back its own pending entries at once")
}

// givenString is a string flag that also records that it was given, even empty.
type givenString struct {
	value *string
	given *bool
}

func (g *givenString) String() string {
	if g == nil || g.value == nil { // the flag package's zero value, for its help
		return ""
	}
	return *g.value
}

func (g *givenString) Set(s string) error {
	*g.value, *g.given = s, true
	return nil
}

// urlSet reports whether a Redis URL was given in any of the three ways, an empty one
// included.
func (r *redisFlags) urlSet(e *env) bool {
	return r.urlGiven || r.fileGiven || e.getenv("NECRO_REDIS_URL") != ""
}

// config returns the store's settings: the URL from --redis, else --redis-url-file,
// else $NECRO_REDIS_URL. Without any it is a usage error, and so is one given empty.
func (r *redisFlags) config(e *env) (necroredis.Config, error) {
	var url string
	switch {
	case r.urlGiven && r.fileGiven:
		return necroredis.Config{}, usageErr("give --redis or --redis-url-file, not both")
	case r.urlGiven:
		if strings.TrimSpace(r.url) == "" {
			return necroredis.Config{}, usageErr("--redis is empty: give the Redis URL (is the variable that should hold it set?)")
		}
		url = r.url
	case r.fileGiven:
		b, err := os.ReadFile(r.urlFile)
		if err != nil {
			return necroredis.Config{}, usageErr("read --redis-url-file: %v", err)
		}
		if url = strings.TrimSpace(string(b)); url == "" {
			return necroredis.Config{}, usageErr("--redis-url-file %s holds no URL", r.urlFile)
		}
	default:
		url = e.getenv("NECRO_REDIS_URL")
		if url != "" && strings.TrimSpace(url) == "" {
			return necroredis.Config{}, usageErr("NECRO_REDIS_URL is blank: give the Redis URL")
		}
	}
	if url == "" {
		return necroredis.Config{}, usageErr("no Redis URL: give --redis URL, --redis-url-file FILE or set NECRO_REDIS_URL")
	}
	return necroredis.Config{URL: url, Stream: r.stream, Group: r.group, Consumer: r.consumer}, nil
}

// defaultDeadLetterMaxLen bounds the dead-letter stream of the commands that serve a
// stream. A dead letter is the last copy of an event, so the bound is generous: a day of
// one failure a second (86,400) fits, and at the usual size of a dead letter (1 KiB or
// less) it is about 100 MiB of Redis memory; a poison entry's dead letter keeps at most
// 8 KiB of its text, so a flood of poison stays under 1 GiB instead of growing until
// Redis refuses every write. Each dead letter dropped is counted and logged.
const defaultDeadLetterMaxLen = 100_000

// deadLetterBound is the --dead-letter-max-len flag of the commands that serve a stream.
type deadLetterBound struct {
	n   int
	set bool // given on the command line
}

func (d *deadLetterBound) register(fs *flag.FlagSet) {
	fs.Func("dead-letter-max-len", "keep at most `N` dead letters in the dead-letter stream, dropping the oldest (each drop counted and logged); "+
		"0 keeps them all (default $NECRO_DEAD_LETTER_MAX_LEN, else 100000)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errors.New("want a count, 0 or more (0 keeps them all)")
		}
		d.n, d.set = n, true
		return nil
	})
}

// value returns the bound: the flag's, else $NECRO_DEAD_LETTER_MAX_LEN's, else
// defaultDeadLetterMaxLen. A variable that is not a count is a usage error.
func (d *deadLetterBound) value(e *env) (int, error) {
	if d.set {
		return d.n, nil
	}
	v := strings.TrimSpace(e.getenv("NECRO_DEAD_LETTER_MAX_LEN"))
	if v == "" {
		return defaultDeadLetterMaxLen, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, usageErr("NECRO_DEAD_LETTER_MAX_LEN=%q: want a count of dead letters, 0 or more (0 keeps them all)", v)
	}
	return n, nil
}

// openTimeout bounds connecting to Redis, so that an unreachable server is an exit
// code in seconds, not a hang.
const openTimeout = 10 * time.Second

// openRedis opens the store and turns its failure into an exit code: a URL that
// cannot work, unreachable, or refused credentials, permissions or TLS. The error text
// never holds the password (Open masks it).
func openRedis(ctx context.Context, cfg necroredis.Config) (*necroredis.Backend, error) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	b, err := necroredis.Open(octx, cfg)
	if err != nil {
		return nil, withCode(redisExitCode(err), err)
	}
	return b, nil
}

// redisExitCode classifies a failure to reach Redis: a URL that cannot work (no host,
// a bad port, a database the server lacks) is a usage error; refused credentials,
// missing permissions and a failed TLS handshake are the auth code.
func redisExitCode(err error) int {
	s := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, necroredis.ErrInvalidConfig):
		return exitUsage
	case errors.Is(err, necroredis.ErrNoPermission):
		return exitAuth
	case strings.Contains(s, "wrongpass"), strings.Contains(s, "noauth"), strings.Contains(s, "noperm"),
		strings.Contains(s, "invalid password"), strings.Contains(s, "authentication"),
		strings.Contains(s, "tls"), strings.Contains(s, "x509"), strings.Contains(s, "certificate"):
		return exitAuth
	}
	return exitUnreachable
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// logLevel is the level of a command's JSON logs on stderr: warnings, or everything
// with -v.
func logLevel(verbose bool) slog.Level {
	if verbose {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// flushTimeout bounds the flush of buffered spans and metrics when a command ends.
const flushTimeout = 5 * time.Second

// An observer is the telemetry of a command: the providers the OTEL_* environment asks
// for and, with --metrics-addr, the HTTP endpoints that serve the metrics and the
// health checks. Create it with startTelemetry and end it with close.
type observer struct {
	providers *telemetry.Providers
	ln        net.Listener       // the endpoints' listener; nil without --metrics-addr
	stop      context.CancelFunc // stops the endpoints; nil until serve
	served    chan error         // the endpoints' result; nil until serve
}

// startTelemetry builds the providers as the environment says, with a Prometheus scrape
// when metricsAddr is set, and binds metricsAddr at once so that a bad address fails
// before any work is done. The endpoints are served from serve on.
func startTelemetry(ctx context.Context, metricsAddr string) (*observer, error) {
	p, err := telemetry.Setup(ctx, telemetry.SetupConfig{ServiceName: "necro-actors", Prometheus: metricsAddr != ""})
	if err != nil {
		return nil, withCode(exitUsage, err) // an OTEL_* variable with a value it cannot use
	}
	o := &observer{providers: p}
	if metricsAddr != "" {
		if o.ln, err = net.Listen("tcp", metricsAddr); err != nil {
			_ = p.Shutdown(ctx) // nothing was recorded yet; the listen error is the one to report
			return nil, withCode(exitUsage, fmt.Errorf("--metrics-addr: %w", err))
		}
	}
	return o, nil
}

// recorder is what a Spine and a producer record to; nil records nothing.
func (o *observer) recorder() *telemetry.Recorder { return o.providers.Recorder() }

// addr returns the address the endpoints listen on, or "" without --metrics-addr.
func (o *observer) addr() string {
	if o.ln == nil {
		return ""
	}
	return o.ln.Addr().String()
}

// serve serves /metrics, /healthz and /readyz (with the ready checks) until close;
// without --metrics-addr it does nothing.
func (o *observer) serve(ctx context.Context, ready map[string]telemetry.Check, log *slog.Logger) {
	if o.ln == nil || o.served != nil {
		return
	}
	ctx, o.stop = context.WithCancel(context.WithoutCancel(ctx))
	o.served = make(chan error, 1) // the server's goroutine never waits to hand over its result
	cfg := telemetry.EndpointsConfig{Metrics: o.providers.MetricsHandler(), Ready: ready, Logger: log}
	go func() { o.served <- telemetry.Serve(ctx, o.ln, cfg) }()
}

// closeLogged closes o, for a deferred call: a failure to flush loses only telemetry,
// so it is logged on log rather than failing the command.
func (o *observer) closeLogged(ctx context.Context, log *slog.Logger) {
	if err := o.close(ctx); err != nil {
		log.WarnContext(ctx, "flushing telemetry failed", slog.Any("err", err))
	}
}

// close stops the endpoints, waits for them, and flushes what the providers buffer,
// within flushTimeout.
func (o *observer) close(ctx context.Context) error {
	var errs []error
	switch {
	case o.served != nil:
		o.stop()
		errs = append(errs, <-o.served)
	case o.ln != nil:
		errs = append(errs, o.ln.Close())
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	errs = append(errs, o.providers.Shutdown(fctx))
	return errors.Join(errs...)
}
