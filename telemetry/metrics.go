package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/necrostack/necro"
)

func instrumentationScope() instrumentation.Scope {
	return instrumentation.Scope{Name: instrumentationName}
}

// Figures are the counts and levels a Spine reports at each metrics collection. The
// counters only grow over a Spine's life; a level of -1 means the store cannot tell.
type Figures struct {
	Processed       int64            // deliveries settled
	Emitted         int64            // children enqueued
	Dispatched      int64            // deliveries handed to organs
	Failed          map[string]int64 // failed handling attempts, per organ
	Retried         int64            // retries scheduled
	DeadLettered    int64            // dead letters written
	Unrouted        int64            // deliveries no organ of a live worker listens to
	HandedOff       int64            // deliveries passed, unhandled, to another worker that routes them
	Forwarded       int64            // copies sent on to organs only other workers mount
	Deferred        int64            // deliveries nacked for want of a fresh reading of the store's roster
	Panics          int64            // Handle calls that panicked
	Timeouts        int64            // Handle calls past their deadline
	Abandoned       int64            // Handle calls abandoned after ignoring their ctx
	Restarts        int64            // organ actor restarts
	Quarantines     int64            // organ quarantines
	BackendErrors   int64            // failed pulls and settles
	EnqueueFailures int64            // children the store refused
	AckErrors       int64            // settlements the store rejected as unknown
	DepthExceeded   int64            // children cut by the depth budget (dead-lettered)
	FanOutExceeded  int64            // Handle calls cut by the fan-out budget
	Reconnections   int64            // connections to the store made again; -1 when it has none

	WindowOccupancy int64 // deliveries pulled and not yet settled
	QueueDepth      int64 // events waiting in the store; -1 unknown
	Pending         int64 // events handed out and not yet settled, by every consumer; -1 unknown
	DeadLetterDepth int64 // dead letters held by the store; -1 unknown
}

// instruments are the Recorder's metrics. The counters and levels are observed from
// Figures when the meter collects; only the two histograms are recorded as events pass.
type instruments struct {
	handleDuration metric.Float64Histogram
	latency        metric.Float64Histogram

	processed, emitted, dispatched, failed, retried, deadLettered, unrouted    metric.Int64ObservableCounter
	panics, timeouts, abandoned, restarts, quarantines, backendErrors, enqFail metric.Int64ObservableCounter
	reconnections, ackErrors, depthExceeded, fanOutExceeded                    metric.Int64ObservableCounter
	handedOff, forwarded, deferred                                             metric.Int64ObservableCounter
	window, depth, pending, deadLetters                                        metric.Int64ObservableGauge
}

func newInstruments(m metric.Meter) (*instruments, error) {
	in := &instruments{}
	var errs []error
	hist := func(name, desc string, bounds ...float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return g
	}
	in.handleDuration = hist("necro.handler.duration", "Time one Handle call took",
		0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30)
	in.latency = hist("necro.event.latency", "End-to-end latency: from the event's timestamp until its handling was settled",
		0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300)
	in.processed = counter("necro.events.processed", "{event}", "Deliveries settled: acked, nacked or dead-lettered")
	in.emitted = counter("necro.events.emitted", "{event}", "Children enqueued")
	in.dispatched = counter("necro.events.dispatched", "{event}", "Deliveries handed to organs")
	in.failed = counter("necro.handler.failures", "{attempt}", "Failed handling attempts: errors, panics, timeouts")
	in.retried = counter("necro.events.retried", "{event}", "Retries scheduled")
	in.deadLettered = counter("necro.events.dead_lettered", "{event}", "Dead letters written")
	in.unrouted = counter("necro.events.unrouted", "{event}", "Deliveries no organ of a live worker listens to (acked or dead-lettered, as configured)")
	in.handedOff = counter("necro.events.handed_off", "{event}", "Deliveries passed, unhandled, to another worker that routes them")
	in.forwarded = counter("necro.events.forwarded", "{event}", "Copies of deliveries sent on to organs only other workers mount")
	in.deferred = counter("necro.events.deferred", "{event}", "Deliveries nacked for want of a fresh reading of the store's roster")
	in.panics = counter("necro.handler.panics", "{call}", "Handle calls that panicked")
	in.timeouts = counter("necro.handler.timeouts", "{call}", "Handle calls past their deadline")
	in.abandoned = counter("necro.handler.abandoned", "{call}", "Handle calls abandoned after ignoring their deadline")
	in.restarts = counter("necro.organ.restarts", "{restart}", "Organ actor restarts")
	in.quarantines = counter("necro.organ.quarantines", "{quarantine}", "Organ quarantines")
	in.backendErrors = counter("necro.backend.errors", "{error}", "Failed pulls and settles")
	in.enqFail = counter("necro.backend.enqueue_failures", "{event}", "Children the store refused")
	in.ackErrors = counter("necro.backend.ack_errors", "{settlement}", "Settlements the store rejected as unknown (redelivered elsewhere)")
	in.depthExceeded = counter("necro.budget.depth_exceeded", "{event}", "Children cut by the depth budget and dead-lettered")
	in.fanOutExceeded = counter("necro.budget.fan_out_exceeded", "{call}", "Handle calls cut by the fan-out budget")
	in.reconnections = counter("necro.backend.reconnections", "{connection}", "Connections to the store made again after one was lost")
	in.window = gauge("necro.window.occupancy", "{event}", "Deliveries pulled and not yet settled")
	in.depth = gauge("necro.queue.depth", "{event}", "Events waiting in the store")
	in.pending = gauge("necro.queue.pending", "{event}", "Events handed out and not yet settled, by every consumer")
	in.deadLetters = gauge("necro.queue.dead_letters", "{event}", "Dead letters the store holds")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return in, nil
}

// enabled reports whether the meter records anything: a no-op meter's instruments are
// all disabled.
func (in *instruments) enabled() bool {
	return in.handleDuration.Enabled(context.Background())
}

func (in *instruments) observables() []metric.Observable {
	return []metric.Observable{in.processed, in.emitted, in.dispatched, in.failed, in.retried, in.deadLettered,
		in.unrouted, in.panics, in.timeouts, in.abandoned, in.restarts, in.quarantines, in.backendErrors, in.enqFail,
		in.reconnections, in.ackErrors, in.depthExceeded, in.fanOutExceeded, in.handedOff, in.forwarded, in.deferred, in.window, in.depth, in.pending, in.deadLetters}
}

// Observe registers read, which the meter calls at each collection for the figures of
// one Spine; dest labels them. read reports false when it has nothing to say (its Spine
// is gone). Call the returned stop to unregister. With metrics off it registers nothing.
func (r *Recorder) Observe(dest Destination, read func(ctx context.Context) (Figures, bool)) (stop func(), err error) {
	if !r.Metering() {
		return func() {}, nil
	}
	in := r.inst
	base := metric.WithAttributeSet(attribute.NewSet(dest.attrs(nil)...))
	reg, err := r.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		f, ok := read(ctx)
		if !ok {
			return nil
		}
		for _, c := range []struct {
			i metric.Int64ObservableCounter
			v int64
		}{{in.processed, f.Processed}, {in.emitted, f.Emitted}, {in.dispatched, f.Dispatched},
			{in.retried, f.Retried}, {in.deadLettered, f.DeadLettered}, {in.unrouted, f.Unrouted},
			{in.panics, f.Panics}, {in.timeouts, f.Timeouts}, {in.abandoned, f.Abandoned}, {in.restarts, f.Restarts},
			{in.quarantines, f.Quarantines}, {in.backendErrors, f.BackendErrors}, {in.enqFail, f.EnqueueFailures},
			{in.ackErrors, f.AckErrors}, {in.depthExceeded, f.DepthExceeded}, {in.fanOutExceeded, f.FanOutExceeded},
			{in.handedOff, f.HandedOff}, {in.forwarded, f.Forwarded}, {in.deferred, f.Deferred}} {
			o.ObserveInt64(c.i, c.v, base)
		}
		if f.Reconnections >= 0 {
			o.ObserveInt64(in.reconnections, f.Reconnections, base)
		}
		for organ, n := range f.Failed {
			o.ObserveInt64(in.failed, n, metric.WithAttributeSet(attribute.NewSet(
				append(dest.attrs(nil), attribute.String(attrOrgan, organ))...)))
		}
		o.ObserveInt64(in.window, f.WindowOccupancy, base)
		for _, g := range []struct {
			i metric.Int64ObservableGauge
			v int64
		}{{in.depth, f.QueueDepth}, {in.pending, f.Pending}, {in.deadLetters, f.DeadLetterDepth}} {
			if g.v >= 0 {
				o.ObserveInt64(g.i, g.v, base)
			}
		}
		return nil
	}, in.observables()...)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil // unregistering twice or after shutdown is harmless
}

// Handled records the duration of one Handle call of ev by organ; failed handlings
// carry their error.type. ctx should hold the call's span (see [Span.Context]), so
// that a sampled measurement's exemplar points at it.
func (r *Recorder) Handled(ctx context.Context, ev necro.Event, organ string, d time.Duration, err error) {
	if !r.Metering() {
		return
	}
	switch {
	case r.correlate:
		kv := []attribute.KeyValue{attribute.String(attrOrgan, organ), attribute.String(KeyCorrelationID, ev.Correlation())}
		if err != nil {
			kv = append(kv, attribute.String(attrErrorType, ErrorType(err)))
		}
		r.inst.handleDuration.Record(ctx, d.Seconds(), metric.WithAttributes(kv...))
	case err != nil:
		r.inst.handleDuration.Record(ctx, d.Seconds(), metric.WithAttributes(
			attribute.String(attrOrgan, organ), attribute.String(attrErrorType, ErrorType(err))))
	default:
		r.inst.handleDuration.Record(ctx, d.Seconds(), r.organOption(organ))
	}
}

// organOption returns the measurement option labelling a measurement with the organ,
// made once per organ: building an attribute set costs more than recording.
func (r *Recorder) organOption(organ string) metric.MeasurementOption {
	if o, ok := r.organs.Load(organ); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := r.organs.LoadOrStore(organ, metric.WithAttributeSet(attribute.NewSet(attribute.String(attrOrgan, organ))))
	return o.(metric.MeasurementOption)
}

// Latency records the end-to-end latency of ev: from its timestamp until now, when its
// handling was settled.
func (r *Recorder) Latency(ctx context.Context, ev necro.Event, now time.Time) {
	if !r.Metering() {
		return
	}
	v := max(now.Sub(ev.Timestamp()), 0).Seconds()
	if r.correlate {
		r.inst.latency.Record(ctx, v, metric.WithAttributes(attribute.String(KeyCorrelationID, ev.Correlation())))
		return
	}
	r.inst.latency.Record(ctx, v)
}

// MetricViews are the views a MeterProvider needs for [Config.CorrelationExemplars]:
// they keep the series of the handler duration and the latency to their low-cardinality
// attributes, so the correlation id recorded with each measurement goes only to the
// exemplars. [Setup] installs them.
func MetricViews() []sdkmetric.View {
	keep := attribute.NewAllowKeysFilter(attrOrgan, attrErrorType, attrSystem, attrDestination, attrGroup)
	var views []sdkmetric.View
	for _, name := range []string{"necro.handler.duration", "necro.event.latency"} {
		views = append(views, sdkmetric.NewView(sdkmetric.Instrument{Name: name, Scope: instrumentationScope()},
			sdkmetric.Stream{AttributeFilter: keep}))
	}
	return views
}
