package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The environment variables [Setup] decides by. The exporters and the SDK read the
// others (endpoints, headers, timeouts, TLS, sampler, batching, export interval).
const (
	envDisabled        = "OTEL_SDK_DISABLED"
	envTracesExporter  = "OTEL_TRACES_EXPORTER"
	envMetricsExporter = "OTEL_METRICS_EXPORTER"
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envMetricsProtocol = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL spells them.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http/protobuf"
)

// SetupConfig says what [Setup] builds beyond what the environment asks for. The zero
// value is ready to use. The environment is always the process's own: the otel SDK and
// exporters read their variables from it too, so a substitute could only half apply.
type SetupConfig struct {
	// ServiceName is the resource's service.name unless OTEL_SERVICE_NAME or a
	// service.name in OTEL_RESOURCE_ATTRIBUTES says otherwise; empty means "necro".
	ServiceName string
	// Prometheus keeps the metrics for a Prometheus scrape as well, served by
	// [Providers.MetricsHandler], whatever OTEL_METRICS_EXPORTER and OTEL_SDK_DISABLED
	// say: the program asked for it in code.
	Prometheus bool
}

// Providers are the tracer and meter providers [Setup] built from the environment, and
// the [Recorder] over them. Its methods are safe for concurrent use.
type Providers struct {
	tracer  *sdktrace.TracerProvider // nil: tracing off
	meter   *sdkmetric.MeterProvider // nil: metrics off
	rec     *Recorder
	metrics http.Handler // nil: no Prometheus scrape

	mu       sync.Mutex
	shutDown bool // guarded by mu
}

// Setup builds OpenTelemetry providers as the standard OTEL_* environment variables
// say, and a [Recorder] over them. Everything is off unless the environment or cfg
// asks for it, and what is off costs nothing: with nothing set, Setup builds nothing,
// starts nothing and [Providers.Recorder] is nil.
//
//   - OTEL_SDK_DISABLED=true turns off everything the environment asks for;
//     cfg.Prometheus, a request made in code, stays on.
//   - OTEL_TRACES_EXPORTER: "otlp" turns tracing on, "none" off. Unset, tracing is on
//     when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
//   - OTEL_METRICS_EXPORTER: a comma-separated list of "otlp", "prometheus" and
//     "none". Unset, it means "otlp" when OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set,
//     and nothing otherwise. Unlike the specification, OTEL_EXPORTER_OTLP_ENDPOINT alone
//     does not turn metrics on: it most often points at Jaeger, which takes traces only
//     and would refuse every metrics export; say "otlp" to send metrics there. "prometheus"
//     keeps the metrics for [Providers.MetricsHandler], as cfg.Prometheus does; serving
//     that handler is the program's part (see [Endpoints]).
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL and OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
//     falling back to OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" or "http/protobuf", the
//     default.
//
// Any other value of these variables is an error naming the variable and its value.
// The OTLP exporters read the endpoint, headers, timeout, compression, insecure and
// certificate variables themselves; an "http://" endpoint means no TLS, for gRPC too.
// The tracer provider samples as OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG say
// (parentbased_always_on by default) and batches spans as the OTEL_BSP_* variables
// say; OTLP metrics are exported every OTEL_METRIC_EXPORT_INTERVAL (60s by default).
// The resource carries OTEL_RESOURCE_ATTRIBUTES, the host name and the SDK's version.
//
// Setup makes what it turned on otel's global providers, and with tracing on it sets
// the global propagator to W3C trace context and baggage, so that spans and metrics a
// program makes with otel directly join necro's. The meter provider has the
// [MetricViews]. With tracing and metrics on, the exemplars of the handler duration and
// latency carry the flow's correlation id beside the trace and span ids
// ([Config.CorrelationExemplars]).
//
// Call [Providers.Shutdown] when done, to flush what is buffered. On an error, Setup
// shuts down what it had built and returns a nil *Providers.
func Setup(ctx context.Context, cfg SetupConfig) (*Providers, error) {
	plan, err := readEnv(os.Getenv, cfg.Prometheus)
	if err != nil {
		return nil, err
	}
	p := &Providers{}
	if !plan.traces && !plan.otlpMetrics && !plan.prometheus {
		return p, nil
	}
	res, err := newResource(ctx, cfg.ServiceName)
	if err != nil {
		return nil, err
	}
	if plan.traces {
		exp, err := newSpanExporter(ctx, plan.tracesProtocol)
		if err != nil {
			return nil, err
		}
		// With no sampler option, the provider reads OTEL_TRACES_SAMPLER itself.
		p.tracer = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
			sdktrace.WithIDGenerator(IDGenerator()))
	}
	if plan.otlpMetrics || plan.prometheus {
		if err := p.buildMeter(ctx, plan, res); err != nil {
			return nil, errors.Join(err, p.Shutdown(ctx))
		}
	}
	var tp trace.TracerProvider = tracenoop.NewTracerProvider()
	if p.tracer != nil {
		tp = p.tracer
	}
	var mp metric.MeterProvider = metricnoop.NewMeterProvider()
	if p.meter != nil {
		mp = p.meter
	}
	// The no-op providers stand for what is off: New would take otel's global ones,
	// which the program may have set, for a nil field. Exemplars exist only for
	// measurements made inside a sampled span, so correlation ids need tracing too.
	p.rec, err = New(Config{TracerProvider: tp, MeterProvider: mp,
		CorrelationExemplars: p.tracer != nil && p.meter != nil})
	if err != nil {
		return nil, errors.Join(err, p.Shutdown(ctx))
	}
	if p.tracer != nil {
		otel.SetTracerProvider(p.tracer)
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	}
	if p.meter != nil {
		otel.SetMeterProvider(p.meter)
	}
	return p, nil
}

// buildMeter makes p's meter provider with the readers plan asks for.
func (p *Providers) buildMeter(ctx context.Context, plan envPlan, res *resource.Resource) error {
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithView(MetricViews()...)}
	// The Prometheus exporter goes first: it can fail, and the OTLP one needs shutting
	// down once made, which the meter provider then does.
	if plan.prometheus {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(exp))
		p.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	}
	if plan.otlpMetrics {
		exp, err := newMetricExporter(ctx, plan.metricsProtocol)
		if err != nil {
			return err
		}
		// The periodic reader reads OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT itself.
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	p.meter = sdkmetric.NewMeterProvider(opts...)
	return nil
}

// Recorder returns the Recorder over p's providers; it is nil, and records nothing,
// when tracing and metrics are both off.
func (p *Providers) Recorder() *Recorder { return p.rec }

// MetricsHandler returns the handler of a Prometheus scrape of the metrics, for
// [EndpointsConfig.Metrics]; it is nil unless Prometheus is on.
func (p *Providers) MetricsHandler() http.Handler { return p.metrics }

// Tracing reports whether p exports spans.
func (p *Providers) Tracing() bool { return p.tracer != nil }

// Metering reports whether p keeps metrics, for OTLP or Prometheus.
func (p *Providers) Metering() bool { return p.meter != nil }

// ForceFlush exports what the providers have buffered now, rather than at the next
// batch or collection: for a program that prints trace links and wants them to work at
// once. It returns the exporters' errors, joined.
func (p *Providers) ForceFlush(ctx context.Context) error {
	var errs []error
	if p.tracer != nil {
		errs = append(errs, p.tracer.ForceFlush(ctx))
	}
	if p.meter != nil {
		errs = append(errs, p.meter.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes what the exporters hold and stops them, within ctx. It returns
// every failure joined with errors.Join. Calling it again does nothing and returns
// nil. The global providers stay set; once shut down they record nothing.
func (p *Providers) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutDown {
		return nil
	}
	p.shutDown = true
	var errs []error
	if p.tracer != nil {
		if err := p.tracer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down tracer provider: %w", err))
		}
	}
	if p.meter != nil {
		if err := p.meter.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down meter provider: %w", err))
		}
	}
	return errors.Join(errs...)
}

// envPlan is what the environment asks Setup to build.
type envPlan struct {
	traces          bool
	tracesProtocol  string
	otlpMetrics     bool
	metricsProtocol string
	prometheus      bool
}

// readEnv reads the plan from getenv; prometheus is the program's own request.
func readEnv(getenv func(string) string, prometheus bool) (envPlan, error) {
	plan := envPlan{prometheus: prometheus}
	switch v := strings.TrimSpace(getenv(envDisabled)); strings.ToLower(v) {
	case "", "false":
	case "true":
		return plan, nil
	default:
		return plan, fmt.Errorf("telemetry: %s=%q is not a boolean; use true or false", envDisabled, v)
	}

	traces, set, err := exporters(getenv, envTracesExporter, "otlp", "none")
	if err != nil {
		return plan, err
	}
	if set {
		plan.traces = slices.Contains(traces, "otlp")
	} else {
		plan.traces = isSet(getenv, envEndpoint) || isSet(getenv, envTracesEndpoint)
	}
	metrics, set, err := exporters(getenv, envMetricsExporter, "otlp", "prometheus", "none")
	if err != nil {
		return plan, err
	}
	if set {
		plan.otlpMetrics = slices.Contains(metrics, "otlp")
		plan.prometheus = plan.prometheus || slices.Contains(metrics, "prometheus")
	} else {
		// Only a metrics endpoint of its own turns OTLP metrics on: the general endpoint
		// is most often Jaeger, which takes traces only and would refuse every export.
		plan.otlpMetrics = isSet(getenv, envMetricsEndpoint)
	}

	// A protocol is checked only for a signal that uses OTLP: a variable left over for
	// a signal that is off should not stop the program.
	if plan.traces {
		if plan.tracesProtocol, err = protocol(getenv, envTracesProtocol); err != nil {
			return plan, err
		}
	}
	if plan.otlpMetrics {
		if plan.metricsProtocol, err = protocol(getenv, envMetricsProtocol); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// exporters reads the comma-separated list of exporters in the variable name, each
// one of supported; set is false when the variable is unset or blank.
func exporters(getenv func(string) string, name string, supported ...string) (list []string, set bool, err error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return nil, false, nil
	}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" {
			continue
		}
		if !slices.Contains(supported, item) {
			return nil, true, fmt.Errorf("telemetry: %s=%q: exporter %q is not supported; use %s",
				name, v, item, strings.Join(supported, ", "))
		}
		list = append(list, item)
	}
	return list, true, nil
}

// protocol reads the OTLP protocol of one signal from its own variable, else from
// OTEL_EXPORTER_OTLP_PROTOCOL.
func protocol(getenv func(string) string, signalVar string) (string, error) {
	name, v := signalVar, strings.TrimSpace(getenv(signalVar))
	if v == "" {
		name, v = envProtocol, strings.TrimSpace(getenv(envProtocol))
	}
	switch p := strings.ToLower(v); p {
	case "":
		return protocolHTTP, nil // the default of the OpenTelemetry specification
	case protocolGRPC, protocolHTTP:
		return p, nil
	}
	return "", fmt.Errorf("telemetry: %s=%q is not supported; use %s or %s", name, v, protocolGRPC, protocolHTTP)
}

func isSet(getenv func(string) string, name string) bool {
	return strings.TrimSpace(getenv(name)) != ""
}

// newResource describes the service. Later detectors win, so OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override name. resource.New rather than a Merge with
// resource.Default: a merge fails when the two schema URLs differ.
func newResource(ctx context.Context, name string) (*resource.Resource, error) {
	if name == "" {
		name = "necro"
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", name)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

func newSpanExporter(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if protocol == protocolGRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp trace exporter over %s: %w", protocol, err)
	}
	return exp, nil
}

func newMetricExporter(ctx context.Context, protocol string) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	if protocol == protocolGRPC {
		exp, err = otlpmetricgrpc.New(ctx)
	} else {
		exp, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp metric exporter over %s: %w", protocol, err)
	}
	return exp, nil
}
