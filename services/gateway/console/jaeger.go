package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/souk-shop/souk/platform/telemetry"
)

// jaegerSource finds an order's trace through a Jaeger query service's
// HTTP API (/api/traces), for traces exported to a collector that stores
// them in Jaeger: the trace of the orders service's span that carries the
// order's order.id, every service's spans in it.
type jaegerSource struct {
	base   string
	client *http.Client
}

func newJaegerSource(base string) *jaegerSource {
	return &jaegerSource{base: base, client: &http.Client{Timeout: 5 * time.Second}}
}

// jaegerAnswer is the query API's answer: traces, each with its spans and
// the processes (services) they came from.
type jaegerAnswer struct {
	Data []struct {
		TraceID string `json:"traceID"`
		Spans   []struct {
			TraceID       string `json:"traceID"`
			SpanID        string `json:"spanID"`
			OperationName string `json:"operationName"`
			References    []struct {
				RefType string `json:"refType"`
				SpanID  string `json:"spanID"`
			} `json:"references"`
			StartTime int64       `json:"startTime"` // µs since the epoch
			Duration  int64       `json:"duration"`  // µs
			Tags      []jaegerTag `json:"tags"`
			ProcessID string      `json:"processID"`
		} `json:"spans"`
		Processes map[string]struct {
			ServiceName string `json:"serviceName"`
		} `json:"processes"`
	} `json:"data"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// orderTrace returns the spans of the order's trace, found by its
// order.id tag within lookback; ok is false when Jaeger has none.
func (j *jaegerSource) orderTrace(ctx context.Context, orderID string, lookback time.Duration) (traceID string, spans []telemetry.Span, ok bool, err error) {
	tags, _ := json.Marshal(map[string]string{"order.id": orderID})
	q := url.Values{"service": {"orders"}, "tags": {string(tags)}, "limit": {"1"},
		"start": {strconv.FormatInt(time.Now().Add(-lookback).UnixMicro(), 10)}, "end": {strconv.FormatInt(time.Now().UnixMicro(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.base+"/api/traces?"+q.Encode(), nil)
	if err != nil {
		return "", nil, false, err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return "", nil, false, fmt.Errorf("Jaeger at %s: %w", j.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, false, fmt.Errorf("Jaeger at %s answered %s", j.base, resp.Status)
	}
	var a jaegerAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return "", nil, false, fmt.Errorf("Jaeger at %s: %w", j.base, err)
	}
	if len(a.Data) == 0 {
		return "", nil, false, nil
	}
	t := a.Data[0]
	for _, s := range t.Spans {
		sp := telemetry.Span{TraceID: s.TraceID, SpanID: s.SpanID, Name: s.OperationName,
			Service: t.Processes[s.ProcessID].ServiceName, Kind: "internal",
			Start: time.UnixMicro(s.StartTime).UTC(), DurationMS: float64(s.Duration) / 1000, Attributes: map[string]string{}}
		for _, r := range s.References {
			switch {
			case r.RefType == "CHILD_OF" && sp.ParentID == "":
				sp.ParentID = r.SpanID
			default:
				sp.Links = append(sp.Links, r.SpanID)
			}
		}
		for _, tag := range s.Tags {
			v := fmt.Sprint(tag.Value)
			switch tag.Key {
			case "span.kind":
				sp.Kind = v
			case "error":
				sp.Error = v == "true"
			case "otel.status_code":
				sp.Error = sp.Error || v == "ERROR"
			case "internal.span.format", "otel.scope.name", "otel.scope.version", "otel.library.name", "otel.library.version":
			default:
				sp.Attributes[tag.Key] = v
			}
		}
		if len(sp.Attributes) == 0 {
			sp.Attributes = nil
		}
		spans = append(spans, sp)
	}
	slices.SortStableFunc(spans, func(a, b telemetry.Span) int { return a.Start.Compare(b.Start) })
	return t.TraceID, spans, true, nil
}
