package system

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/telemetry"
	"github.com/souk-shop/souk/services/gateway"
)

// TestTracing follows one sign-up from the gateway, through the users
// service and its database, and through the UserRegistered event into the
// catalog's consumer: one trace, with the parents right, and the users
// service's log lines carrying its trace id.
func TestTracing(t *testing.T) {
	logs := &syncBuffer{}
	sys := startSystem(t, t.TempDir(), logs, nil, func(c *Config) {
		c.Tracing = telemetry.TracingConfig{SampleRatio: 1}
	})
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	r := call(t, "POST", gw+"/api/auth/register", `{"name":"Tracy","email":"tracy@example.com","password":"correct horse battery"}`,
		"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") // untrusted by default: ignored
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	rid := r.header.Get("X-Request-Id")

	type span = telemetry.Span
	var spans []span
	var traceID string
	found := testenv.Eventually(5*time.Second, func() bool {
		var list struct{ Items []telemetry.TraceSummary }
		json.Unmarshal(call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces", "").body, &list)
		for _, tr := range list.Items {
			var got struct{ Spans []span }
			json.Unmarshal(call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces/"+tr.TraceID, "").body, &got)
			for _, s := range got.Spans {
				if s.Service == "gateway" && s.Attributes["request_id"] == rid {
					traceID, spans = tr.TraceID, got.Spans
				}
			}
		}
		for _, s := range spans {
			if s.Service == "catalog" && strings.HasPrefix(s.Name, "process souk.users.v1.UserRegistered") {
				return true
			}
		}
		return false
	})
	if !found {
		t.Fatalf("no trace from the gateway to the catalog's consumer; spans of the request: %+v", spans)
	}
	if traceID == "0af7651916cd43dd8448eb211c80319c" {
		t.Fatal("the gateway continued a client's trace it was not told to trust")
	}
	byID := map[string]span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	find := func(service, kind, prefix string) span {
		for _, s := range spans {
			if s.Service == service && s.Kind == kind && strings.HasPrefix(s.Name, prefix) {
				return s
			}
		}
		t.Fatalf("no %s %s span %q in %+v", service, kind, prefix, spans)
		return span{}
	}
	root := find("gateway", "server", "POST /api/auth/register")
	out := find("gateway", "client", "call users")
	in := find("users", "server", "POST /auth/register")
	tx := find("users", "internal", "db transaction")
	consumed := find("catalog", "consumer", "process souk.users.v1.UserRegistered")
	checks := []struct {
		child, parent span
		what          string
	}{
		{out, root, "the gateway's call to users is a child of its request"},
		{in, out, "users' request is a child of the gateway's call"},
		{tx, in, "the transaction is a child of users' request"},
		{consumed, in, "the catalog's work on the event is a child of the request that wrote it"},
	}
	if root.ParentID != "" {
		t.Errorf("the gateway's span has a parent: %s", root.ParentID)
	}
	for _, c := range checks {
		if c.child.ParentID != c.parent.SpanID {
			t.Errorf("%s: parent %s, want %s (%s)", c.what, c.child.ParentID, c.parent.SpanID, c.parent.Name)
		}
	}

	logged := false
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["service"] == "users" && rec["request_id"] == rid {
			if rec["trace_id"] != traceID || rec["span_id"] == "" {
				t.Errorf("users' log line for the request has trace_id %v, span_id %v; want %s", rec["trace_id"], rec["span_id"], traceID)
			}
			logged = true
		}
	}
	if !logged {
		t.Error("no users log line for the request")
	}

	call(t, "GET", sys.URLs["users"]+"/metrics", "")
	var list struct{ Items []telemetry.TraceSummary }
	json.Unmarshal(call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces", "").body, &list)
	for _, tr := range list.Items {
		if strings.Contains(tr.Root, "/debug/") || strings.Contains(tr.Root, "/metrics") {
			t.Errorf("an operational request was traced: %s", tr.Root)
		}
	}

	// A failing upstream marks the gateway's call span as an error.
	broken := newEcho(t, func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	serveAs(t, registry(t, sys), gw, "echo", broken, "/api/echo/x")
	failed := call(t, "POST", gw+"/api/echo/x", "") // not retried: one call
	if !testenv.Eventually(5*time.Second, func() bool {
		json.Unmarshal(call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces", "").body, &list)
		for _, tr := range list.Items {
			var got struct{ Spans []span }
			json.Unmarshal(call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces/"+tr.TraceID, "").body, &got)
			for _, s := range got.Spans {
				if s.Service == "gateway" && s.Kind == "client" && s.Name == "call echo" && s.Error {
					return true
				}
			}
		}
		return false
	}) {
		t.Errorf("no gateway call span marked as an error for a %d from the upstream", failed.status)
	}

	missing := call(t, "GET", sys.URLs[GatewayOpsName]+"/debug/traces/0af7651916cd43dd8448eb211c80319c", "")
	if missing.status != 404 || missing.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("an unknown trace: %d %s %s, want 404 problem+json", missing.status, missing.header.Get("Content-Type"), missing.body)
	}
}
