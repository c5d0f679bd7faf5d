package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
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
}
