package telemetry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestInjectHTTPMatchesTheLibrary(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: flags, TraceState: ts,
		})
		ctx := trace.ContextWithSpanContext(context.Background(), sc)
		want, got := http.Header{}, http.Header{}
		Propagator.Inject(ctx, propagation.HeaderCarrier(want))
		InjectHTTP(ctx, got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("flags %v: InjectHTTP set %v, the library %v", flags, got, want)
		}
		if got.Get("Traceparent") == "" || got.Get("Tracestate") != "vendor=abc" {
			t.Errorf("flags %v: %v", flags, got)
		}
	}
	h := http.Header{}
	InjectHTTP(context.Background(), h)
	if len(h) != 0 {
		t.Errorf("no span, yet InjectHTTP set %v", h)
	}
}

func TestRingKeepsTheLatestTraces(t *testing.T) {
	ring := NewRing(2)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(ring))
	tracer := tp.Tracer("test")
	var ids []string
	for i := range 3 {
		ctx, root := tracer.Start(context.Background(), fmt.Sprint("root ", i))
		for range maxSpansPerTrace + 5 {
			_, child := tracer.Start(ctx, "child")
			child.End()
		}
		root.End()
		ids = append(ids, root.SpanContext().TraceID().String())
	}
	list := ring.Traces()
	if len(list) != 2 || list[0].TraceID != ids[2] || list[1].TraceID != ids[1] {
		t.Fatalf("kept %+v, want the last two of %v, newest first", list, ids)
	}
	if list[0].Spans != maxSpansPerTrace {
		t.Errorf("a trace kept %d spans, want at most %d", list[0].Spans, maxSpansPerTrace)
	}
	if _, ok := ring.Trace(ids[0]); ok {
		t.Error("the oldest trace is still kept")
	}

	w := httptest.NewRecorder()
	ring.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/debug/traces/"+ids[0], nil))
	if w.Code != http.StatusNotFound || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("an evicted trace: %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	w = httptest.NewRecorder()
	ring.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/debug/traces/"+ids[2], nil))
	if w.Code != http.StatusOK {
		t.Errorf("a kept trace: %d %s", w.Code, w.Body)
	}

	_, failed := tracer.Start(context.Background(), "failed")
	failed.SetStatus(codes.Error, "boom")
	failed.End()
	_, fine := tracer.Start(context.Background(), "fine")
	fine.SetStatus(codes.Ok, "")
	fine.End()
	for _, c := range []struct {
		span trace.Span
		want bool
	}{{failed, true}, {fine, false}} {
		spans, _ := ring.Trace(c.span.SpanContext().TraceID().String())
		if len(spans) != 1 || spans[0].Error != c.want {
			t.Errorf("span %+v: want error %v", spans, c.want)
		}
	}
}

// TestOTLPExport sends spans to an OTLP/HTTP endpoint, as a collector
// would receive them.
func TestOTLPExport(t *testing.T) {
	got := make(chan *collectortrace.ExportTraceServiceRequest, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		got <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	tr, err := NewTracing(t.Context(), TracingConfig{OTLP: true, Endpoint: collector.URL, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Ring() != nil {
		t.Error("traces are kept in memory although they are exported")
	}
	_, span := tr.Provider("orders").Tracer("test").Start(context.Background(), "POST /orders")
	span.End()
	if err := tr.Shutdown(t.Context()); err != nil { // flushes the batch
		t.Fatal(err)
	}
	select {
	case req := <-got:
		rs := req.GetResourceSpans()
		if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
			t.Fatalf("exported %v", req)
		}
		if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "POST /orders" {
			t.Errorf("span name %q", name)
		}
		service := ""
		for _, kv := range rs[0].GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		if service != "orders" {
			t.Errorf("service.name %q, want orders", service)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing exported in 5s")
	}

	for _, bad := range []string{"collector:4318", "ftp://collector", "http://"} {
		if _, err := NewTracing(t.Context(), TracingConfig{OTLP: true, Endpoint: bad, SampleRatio: 1}); err == nil {
			t.Errorf("endpoint %q accepted", bad)
		}
	}
}
