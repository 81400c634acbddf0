package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/necrostack/necro/telemetry"
)

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w.Code, w.Body.String()
}

func pass(context.Context) error { return nil }

func TestEndpointsChecks(t *testing.T) {
	broken := func(context.Context) error { return errors.New("redis down:\nconnection refused") }
	panicky := func(context.Context) error { panic("oops") }
	tests := []struct {
		name     string
		cfg      telemetry.EndpointsConfig
		path     string
		wantCode int
		wantBody string
	}{
		{"no checks", telemetry.EndpointsConfig{}, "/healthz", 200, "ok\n"},
		{"live passes", telemetry.EndpointsConfig{Live: map[string]telemetry.Check{"spine": pass, "actors": pass},
			Ready: map[string]telemetry.Check{"redis": broken}}, "/healthz", 200, "actors: ok\nspine: ok\n"},
		{"ready fails", telemetry.EndpointsConfig{Live: map[string]telemetry.Check{"redis": broken},
			Ready: map[string]telemetry.Check{"spine": pass, "redis": broken}}, "/readyz", 503,
			"redis: fail: redis down: connection refused\nspine: ok\n"},
		{"panicking check", telemetry.EndpointsConfig{Live: map[string]telemetry.Check{"odd": panicky}}, "/healthz", 503,
			"odd: fail: check panicked: oops\n"},
		{"nil check", telemetry.EndpointsConfig{Ready: map[string]telemetry.Check{"none": nil}}, "/readyz", 503,
			"none: fail: no check function\n"},
		{"no metrics handler", telemetry.EndpointsConfig{}, "/metrics", 404, "404 page not found\n"},
		{"metrics handler", telemetry.EndpointsConfig{Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "necro_up 1\n")
		})}, "/metrics", 200, "necro_up 1\n"},
		{"unknown path", telemetry.EndpointsConfig{}, "/debug", 404, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, telemetry.Endpoints(tt.cfg), http.MethodGet, tt.path)
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestEndpointsMethods(t *testing.T) {
	h := telemetry.Endpoints(telemetry.EndpointsConfig{})
	if code, _ := get(t, h, http.MethodHead, "/readyz"); code != 200 {
		t.Errorf("HEAD /readyz = %d, want 200", code)
	}
	if code, _ := get(t, h, http.MethodPost, "/healthz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", code)
	}
}

func TestEndpointsCheckTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		stuck := func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}
		h := telemetry.Endpoints(telemetry.EndpointsConfig{CheckTimeout: timeout,
			Ready: map[string]telemetry.Check{"slow": stuck, "fast": pass, "also slow": stuck}})
		start := time.Now()
		code, body := get(t, h, http.MethodGet, "/readyz")
		if took := time.Since(start); took != timeout {
			t.Errorf("GET /readyz took %v, want the check timeout %v: the checks run concurrently", took, timeout)
		}
		want := fmt.Sprintf("also slow: fail: timed out after %[1]v: context deadline exceeded\nfast: ok\n"+
			"slow: fail: timed out after %[1]v: context deadline exceeded\n", timeout)
		if code != 503 || body != want {
			t.Errorf("GET /readyz = %d %q, want 503 %q", code, body, want)
		}
	})
}

func TestEndpointsDefaultCheckTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadline time.Time
		h := telemetry.Endpoints(telemetry.EndpointsConfig{Live: map[string]telemetry.Check{"peek": func(ctx context.Context) error {
			deadline, _ = ctx.Deadline()
			return nil
		}}})
		start := time.Now()
		get(t, h, http.MethodGet, "/healthz")
		if got := deadline.Sub(start); got != 2*time.Second {
			t.Errorf("a check's deadline is %v after the request, want 2s", got)
		}
	})
}

// serve runs Serve on a free port in the background; stop cancels it and returns its error.
func serve(t *testing.T, cfg telemetry.EndpointsConfig) (addr string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- telemetry.Serve(ctx, ln, cfg) }()
	stop = func() error {
		cancel()
		select {
		case err := <-served:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return within 10s of its ctx being canceled")
			return nil
		}
	}
	return ln.Addr().String(), stop
}

func TestServeStopsWhenCanceled(t *testing.T) {
	addr, stop := serve(t, telemetry.EndpointsConfig{Live: map[string]telemetry.Check{"spine": pass}})
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read in full already
	if err != nil || resp.StatusCode != 200 || string(body) != "spine: ok\n" {
		t.Errorf("GET /healthz = %d %q, %v; want 200 %q", resp.StatusCode, body, err, "spine: ok\n")
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q, want text/plain; charset=utf-8", ct)
	}
	if err := stop(); err != nil {
		t.Errorf("Serve() = %v after cancel, want nil", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("%s still accepts connections after Serve returned", addr)
	}
}

func TestServeWaitsForRequestsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	addr, stop := serve(t, telemetry.EndpointsConfig{Ready: map[string]telemetry.Check{"gate": func(context.Context) error {
		close(entered)
		<-release
		return nil
	}}})
	type result struct {
		code int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			got <- result{err: err}
			return
		}
		_ = resp.Body.Close() // only the status matters
		got <- result{code: resp.StatusCode}
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown closes the listener first; release the check only once it has begun.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		_ = c.Close() // only probing
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections 10s after Serve's ctx was canceled", addr)
		}
	}
	close(release)
	if r := <-got; r.err != nil || r.code != 200 {
		t.Errorf("GET /readyz across shutdown = %d, %v; want 200", r.code, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
}

func TestListenAndServeTakenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }() // only held to take the port
	done := make(chan error, 1)
	go func() { done <- telemetry.ListenAndServe(t.Context(), ln.Addr().String(), telemetry.EndpointsConfig{}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("ListenAndServe(%s) = nil on a taken address, want an error", ln.Addr())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ListenAndServe(%s) on a taken address did not return within 10s", ln.Addr())
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- telemetry.ListenAndServe(ctx, "127.0.0.1:0", telemetry.EndpointsConfig{}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe() = %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return within 10s of its ctx being canceled")
	}
}
