// Package jaegertest runs a real, throwaway Jaeger for tests: the v2 binary, built from
// the tools/jaeger module into bin/jaeger, with in-memory storage, listening only on free
// loopback ports, so that a test can send spans over OTLP and read back, through the
// query API the Jaeger UI uses, what a person would see.
//
// [Start] uses $NECRO_JAEGER_BIN when it is set, and otherwise bin/jaeger at the module
// root, building it first when it is missing or older than tools/jaeger/go.mod or
// go.sum, as `make jaeger` does. When the CI environment variable is set it does not
// build: a missing binary fails the test, since `make test` builds it before any test
// runs.
package jaegertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	modulePath = "github.com/necrostack/necro"
	jaegerPkg  = "github.com/jaegertracing/jaeger/cmd/jaeger"

	// maxTraces is how many traces the in-memory store keeps; it also bounds what one
	// search may return.
	maxTraces = 200_000

	startTimeout = 60 * time.Second // a cold start is a few seconds; CI machines can be slow
	defaultWait  = 30 * time.Second // WaitForTraces, when ctx has no deadline
)

// ErrNotFound is returned by [Server.Trace] when Jaeger holds no trace with that ID.
var ErrNotFound = errors.New("jaegertest: trace not found")

// A Server is one Jaeger process. Its query methods may be called from any goroutine.
type Server struct {
	dir   string
	ports ports
	http  *http.Client
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
}

// ports are Jaeger's listeners, all on 127.0.0.1. Nothing else listens: internal
// metrics are off, and no health check, pprof, zpages or expvar extension is loaded.
type ports struct {
	otlpGRPC, otlpHTTP, queryHTTP, queryGRPC int
}

// Start runs a Jaeger for the test and stops it when the test ends. It returns once the
// query API answers and both OTLP receivers accept connections.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Run(binary(t), t.TempDir())
	if err != nil {
		t.Fatalf("jaeger: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("jaeger: last lines of %s:\n%s", s.logPath(), s.LogTail())
		}
	})
	return s
}

// Run starts the Jaeger binary bin with its configuration and log in dir, outside a
// test (the benchmark suite runs it so), and returns once it serves as [Start] does.
// The caller stops it with [Server.Stop]. A failed start's error holds the log's last
// lines.
func Run(bin, dir string) (*Server, error) {
	bin, err := filepath.Abs(bin) // Jaeger runs in dir
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, http: &http.Client{}}
	// A free port can be taken by another process between our look and Jaeger's bind;
	// that case alone is worth another try with fresh ports.
	for attempt := 1; ; attempt++ {
		err := s.start(bin)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			return nil, fmt.Errorf("%w\nlast lines of %s:\n%s", err, s.logPath(), s.LogTail())
		}
	}
}

// OTLPGRPCEndpoint returns the host:port of the OTLP gRPC receiver (no TLS).
func (s *Server) OTLPGRPCEndpoint() string { return hostPort(s.ports.otlpGRPC) }

// OTLPHTTPEndpoint returns the base URL of the OTLP HTTP receiver, such as
// http://127.0.0.1:43121; spans go to its /v1/traces.
func (s *Server) OTLPHTTPEndpoint() string { return "http://" + hostPort(s.ports.otlpHTTP) }

// QueryURL returns the base URL of the query API, such as http://127.0.0.1:43122; its
// /api/... paths are what [Server.Traces] and the others call.
func (s *Server) QueryURL() string { return "http://" + hostPort(s.ports.queryHTTP) }

var errPortTaken = errors.New("a port was taken before jaeger could bind it")

// start runs the process on fresh ports and waits until it serves. On error the process
// is stopped again.
func (s *Server) start(bin string) error {
	p, err := freePorts(4)
	if err != nil {
		return fmt.Errorf("find free ports: %w", err)
	}
	s.ports = ports{otlpGRPC: p[0], otlpHTTP: p[1], queryHTTP: p[2], queryGRPC: p[3]}
	cfg := filepath.Join(s.dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(s.config()), 0o600); err != nil {
		return err
	}
	out, err := os.Create(s.logPath())
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a stopped server says nothing new
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		err := s.ready()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			if strings.Contains(s.LogTail(), "address already in use") {
				return errPortTaken
			}
			return errors.New("exited at start")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("not ready within %s: %w", startTimeout, err)
		}
	}
}

// ready reports why Jaeger cannot take spans and queries yet, or nil once it can.
func (s *Server) ready() error {
	for _, port := range []int{s.ports.otlpGRPC, s.ports.otlpHTTP} {
		conn, err := net.DialTimeout("tcp", hostPort(port), time.Second)
		if err != nil {
			return err
		}
		_ = conn.Close() // only the accept mattered
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := s.Services(ctx)
	return err
}

// Stop ends Jaeger: SIGTERM, then SIGKILL after 5s. Stopping twice is harmless.
func (s *Server) Stop() {
	s.http.CloseIdleConnections()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM) // a clean stop; Kill follows if it hangs
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "jaeger.log") }

// LogTail returns the last lines Jaeger wrote, for failure messages.
func (s *Server) LogTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// config is Jaeger v2's configuration (an OpenTelemetry Collector's, v1.76.0 schema):
// OTLP in, a batch processor that waits at most 100ms, in-memory storage, and the query
// API; every listener on a port of ours, and the collector's own metrics and the query
// service's self-tracing off, so that nothing binds a default port.
func (s *Server) config() string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn # errors and warnings only: the log is for failure messages

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: %d
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s

processors:
  batch:
    timeout: 100ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, maxTraces, hostPort(s.ports.queryHTTP), hostPort(s.ports.queryGRPC),
		hostPort(s.ports.otlpGRPC), hostPort(s.ports.otlpHTTP))
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePorts asks the kernel for n distinct free loopback ports, holding each until all
// are chosen. Another process could take one before Jaeger binds it; Start then tries
// again.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// binary returns the Jaeger binary to run, building bin/jaeger when needed.
func binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("NECRO_JAEGER_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("NECRO_JAEGER_BIN: %v", err)
		}
		return bin
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("find the module root to locate bin/jaeger: %v", err)
	}
	bin := filepath.Join(root, "bin", "jaeger")
	why := staleness(root, bin)
	if why == "" {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s %s, and CI is set: run `make jaeger` (make test does) before the tests", bin, why)
	}
	if err := build(t, root, bin); err != nil {
		t.Fatalf("build %s: %v", bin, err)
	}
	return bin
}

// staleness says why bin must be built ("is missing", "is older than ..."), or returns
// "" when it is up to date: the rule of the Makefile's bin/jaeger target.
func staleness(root, bin string) string {
	info, err := os.Stat(bin)
	if err != nil {
		return "is missing"
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		src := filepath.Join(root, "tools", "jaeger", name)
		if s, err := os.Stat(src); err == nil && s.ModTime().After(info.ModTime()) {
			return "is older than " + src
		}
	}
	return ""
}

// build builds bin from the tools/jaeger module. Test packages run at once and may all
// want it, so one builds while the others wait on a lock, and the binary appears by
// rename, never half written.
func build(t testing.TB, root, bin string) error {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(filepath.Dir(bin), ".jaeger.lock"))
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer unlock()
	if staleness(root, bin) == "" {
		return nil // built by another test package while we waited
	}
	t.Logf("building %s from tools/jaeger; minutes on a cold cache (`make jaeger` does it ahead)", bin)
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	defer os.Remove(tmp) // gone already when the rename worked
	cmd := exec.Command("go", "build", "-o", tmp, jaegerPkg)
	cmd.Dir = filepath.Join(root, "tools", "jaeger")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %w\n%s", cmd.Dir, err, out)
	}
	return os.Rename(tmp, bin)
}

// moduleRoot walks up from the working directory (a test's is its package directory)
// to the directory whose go.mod declares this module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declares(data, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func declares(gomod []byte, module string) bool {
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == module {
			return true
		}
	}
	return false
}

// A Trace is one trace as Jaeger's query API returns it.
type Trace struct {
	// TraceID is in hex as Jaeger prints it: 32 digits, or 16 when the high half is zero.
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"` // by Span.ProcessID
	Warnings  []string           `json:"warnings"`
}

// A Span is one span of a [Trace]. OpenTelemetry attributes are its Tags, span events
// its Logs, and the resource's attributes, service.name among them, its process's.
type Span struct {
	TraceID       string        `json:"traceID"`
	SpanID        string        `json:"spanID"`
	OperationName string        `json:"operationName"`
	References    []Reference   `json:"references"`
	StartTime     time.Time     `json:"startTime"` // to the microsecond
	Duration      time.Duration `json:"duration"`  // to the microsecond
	Tags          []KeyValue    `json:"tags"`
	Logs          []Log         `json:"logs"`
	ProcessID     string        `json:"processID"`
	Warnings      []string      `json:"warnings"`
}

// UnmarshalJSON reads the span from the query API, which gives times in microseconds
// since the Unix epoch and durations in microseconds.
func (sp *Span) UnmarshalJSON(data []byte) error {
	type plain Span // no methods, so no recursion
	var v struct {
		*plain
		StartTime int64 `json:"startTime"`
		Duration  int64 `json:"duration"`
	}
	v.plain = (*plain)(sp)
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	sp.StartTime = time.UnixMicro(v.StartTime)
	sp.Duration = time.Duration(v.Duration) * time.Microsecond
	return nil
}

// Tag returns the value of the span's tag key, and whether it has one.
func (sp Span) Tag(key string) (any, bool) {
	for _, kv := range sp.Tags {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// ParentSpanID returns the span ID of the span's parent (its first CHILD_OF reference
// within its own trace), or "" for a root span.
func (sp Span) ParentSpanID() string {
	for _, ref := range sp.References {
		if ref.RefType == ChildOf && ref.TraceID == sp.TraceID {
			return ref.SpanID
		}
	}
	return ""
}

// Reference types: an OpenTelemetry parent is CHILD_OF, a span link FOLLOWS_FROM.
const (
	ChildOf     = "CHILD_OF"
	FollowsFrom = "FOLLOWS_FROM"
)

// A Reference ties a span to another: its parent, or a span it links to.
type Reference struct {
	RefType string `json:"refType"` // ChildOf or FollowsFrom
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// A Process is what sent a span: its service and the resource's other attributes.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// A Log is a span event: its name is the field "event", its attributes the other fields.
type Log struct {
	Timestamp time.Time  `json:"timestamp"` // to the microsecond
	Fields    []KeyValue `json:"fields"`
}

// UnmarshalJSON reads the log from the query API, which gives its timestamp in
// microseconds since the Unix epoch.
func (l *Log) UnmarshalJSON(data []byte) error {
	type plain Log
	var v struct {
		*plain
		Timestamp int64 `json:"timestamp"`
	}
	v.plain = (*plain)(l)
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	l.Timestamp = time.UnixMicro(v.Timestamp)
	return nil
}

// A KeyValue is a tag or a log field. Value holds a string, bool, int64, float64 or
// []byte, as Type ("string", "bool", "int64", "float64", "binary") says.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// UnmarshalJSON reads the value as the Go type its Type names: JSON would make every
// number a float64, and Jaeger sends an int64 too large for JavaScript as a string.
func (kv *KeyValue) UnmarshalJSON(data []byte) error {
	var v struct {
		Key   string          `json:"key"`
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	kv.Key, kv.Type = v.Key, v.Type
	var err error
	switch v.Type {
	case "int64":
		var n json.Number // a number, or a string holding one
		if err = json.Unmarshal(v.Value, &n); err == nil {
			kv.Value, err = strconv.ParseInt(n.String(), 10, 64)
		}
	case "float64":
		var f float64
		err = json.Unmarshal(v.Value, &f)
		kv.Value = f
	case "bool":
		var b bool
		err = json.Unmarshal(v.Value, &b)
		kv.Value = b
	case "binary":
		var s string
		if err = json.Unmarshal(v.Value, &s); err == nil {
			kv.Value, err = base64.StdEncoding.DecodeString(s)
		}
	case "string":
		var s string
		err = json.Unmarshal(v.Value, &s)
		kv.Value = s
	default:
		err = json.Unmarshal(v.Value, &kv.Value)
	}
	if err != nil {
		return fmt.Errorf("tag %s of type %q: %w", v.Key, v.Type, err)
	}
	return nil
}

// Traces returns up to limit traces with a span of service, the most recently stored
// first. Zero or less means as many as Jaeger keeps (200,000). The time window reaches
// back to 1970, so spans from inside a synctest bubble, dated 2000, are found too.
func (s *Server) Traces(ctx context.Context, service string, limit int) ([]Trace, error) {
	return s.TracesWith(ctx, service, "", limit)
}

// TracesWith is [Server.Traces] for the traces with a span of service named operation;
// an empty operation means any.
func (s *Server) TracesWith(ctx context.Context, service, operation string, limit int) ([]Trace, error) {
	if limit <= 0 || limit > maxTraces {
		limit = maxTraces
	}
	q := url.Values{
		"service": {service},
		"limit":   {strconv.Itoa(limit)},
		"start":   {"0"},
		"end":     {strconv.FormatInt(time.Now().Add(24*time.Hour).UnixMicro(), 10)},
	}
	if operation != "" {
		q.Set("operation", operation)
	}
	return get[[]Trace](ctx, s, "/api/traces", q)
}

// Trace returns the trace with the given hex ID, or [ErrNotFound].
func (s *Server) Trace(ctx context.Context, traceID string) (Trace, error) {
	traces, err := get[[]Trace](ctx, s, "/api/traces/"+url.PathEscape(traceID), nil)
	if err != nil {
		return Trace{}, err
	}
	if len(traces) != 1 {
		return Trace{}, fmt.Errorf("trace %s: %d traces in the answer, want 1", traceID, len(traces))
	}
	return traces[0], nil
}

// Services returns the names of the services that have sent spans, sorted.
func (s *Server) Services(ctx context.Context) ([]string, error) {
	names, err := get[[]string](ctx, s, "/api/services", nil)
	slices.Sort(names)
	return names, err
}

// Operations returns the span names seen from service, sorted.
func (s *Server) Operations(ctx context.Context, service string) ([]string, error) {
	names, err := get[[]string](ctx, s, "/api/services/"+url.PathEscape(service)+"/operations", nil)
	slices.Sort(names)
	return names, err
}

// WaitForTraces polls [Server.Traces] of service until want accepts them, and returns
// them; spans reach the store only after the exporter's and Jaeger's batching. When ctx
// ends first (if ctx has no deadline, after 30s), it fails the test with what it last
// saw.
func (s *Server) WaitForTraces(t testing.TB, ctx context.Context, service string, want func([]Trace) bool) []Trace {
	t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultWait)
		defer cancel()
	}
	var last []Trace
	var lastErr error
	for {
		traces, err := s.Traces(ctx, service, 0)
		if err == nil && want(traces) {
			return traces
		}
		if ctx.Err() == nil { // an answer cut short by ctx says nothing about Jaeger
			last, lastErr = traces, err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				t.Fatalf("traces of %s: %v (stopped waiting: %v)", service, lastErr, context.Cause(ctx))
			}
			t.Fatalf("traces of %s not as wanted when waiting stopped (%v); the last %d:\n%s",
				service, context.Cause(ctx), len(last), describe(last))
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// describe lists traces one span a line, with parents and services, for failure
// messages.
func describe(traces []Trace) string {
	var b strings.Builder
	for _, tr := range traces {
		fmt.Fprintf(&b, "trace %s:\n", tr.TraceID)
		for _, sp := range tr.Spans {
			fmt.Fprintf(&b, "  span %s %q parent %q service %q, %s\n", sp.SpanID, sp.OperationName,
				sp.ParentSpanID(), tr.Processes[sp.ProcessID].ServiceName, sp.Duration)
		}
	}
	return b.String()
}

// get calls the query API at path and decodes the data of its answer.
func get[T any](ctx context.Context, s *Server, path string, query url.Values) (T, error) {
	var zero T
	u := s.QueryURL() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return zero, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return zero, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return zero, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/api/traces/") {
		return zero, ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return zero, fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	var answer struct {
		Data   T `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return zero, fmt.Errorf("GET %s: decode: %w", u, err)
	}
	if len(answer.Errors) > 0 {
		return zero, fmt.Errorf("GET %s: %d: %s", u, answer.Errors[0].Code, answer.Errors[0].Msg)
	}
	return answer.Data, nil
}
