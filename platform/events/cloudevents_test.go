package events

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

// These tests hold Souk's events to the CloudEvents NATS protocol binding
// by way of the official Go SDK (github.com/cloudevents/sdk-go), which is
// imported here only: what it writes, a Souk consumer applies; what Souk
// writes, it reads and validates.

// TestCloudEventsFromSDK publishes events built and sent by the SDK's NATS
// JetStream binding, in both content modes, with and without time and
// datacontenttype, each twice, into a Souk consumer's stream, and checks
// that the handler gets each with its attributes and data, once.
func TestCloudEventsFromSDK(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sender, err := cejs.NewSenderFromConn(e.nc, StreamName(e.service), e.typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := e.nc.SubscribeSync(e.typ) // what the SDK put on the wire
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		got := map[string]Event{}
		h := func(ctx context.Context, tx *sql.Tx, ev Event) error {
			mu.Lock()
			got[ev.ID] = ev
			mu.Unlock()
			return effectHandler(ctx, tx, ev)
		}
		run(t, e.consumer(t, h, nil).Run)

		at := time.Date(2026, 11, 25, 9, 30, 1, 123456789, time.UTC)
		cases := []struct {
			name        string
			structured  bool
			time        bool
			contentType string // "" for none
			bytes       bool   // data given as bytes: data_base64 in structured mode
		}{
			{name: "binary", time: true, contentType: "application/json"},
			{name: "binary without time", contentType: "application/json"},
			{name: "binary with a charset", time: true, contentType: "application/json; charset=utf-8"},
			{name: "binary without datacontenttype", time: true},
			{name: "structured", structured: true, time: true, contentType: "application/json"},
			{name: "structured without time", structured: true, contentType: "application/json"},
			{name: "structured without datacontenttype", structured: true},
			{name: "structured with data_base64", structured: true, time: true, contentType: "application/json", bytes: true},
		}
		want := make([]Event, len(cases))
		for n, c := range cases {
			ev := event.New()
			ev.SetID(uuid.NewString())
			ev.SetSource("https://example.com/sdk-producer")
			ev.SetType(e.typ)
			ev.SetSubject(fmt.Sprint("sdk-", n))
			if c.time {
				ev.SetTime(at)
			}
			data := fmt.Appendf(nil, `{"n":%d}`, n)
			if c.bytes {
				err = ev.SetData(c.contentType, data)
			} else {
				err = ev.SetData(c.contentType, map[string]int{"n": n})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("%s: the SDK's own validation: %v", c.name, err)
			}
			sendCtx := binding.WithForceBinary(ctx)
			if c.structured {
				sendCtx = binding.WithForceStructured(ctx)
			}
			for range 2 { // the same event twice: the inbox must drop the second
				if err := sender.Send(sendCtx, binding.ToMessage(&ev)); err != nil {
					t.Fatalf("%s: SDK send: %v", c.name, err)
				}
			}
			want[n] = Event{ID: ev.ID(), Type: e.typ, Source: ev.Source(), Subject: ev.Subject(), Data: data}
			if c.time {
				want[n].Time = at
			}

			m, err := wire.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := wire.NextMsg(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			checkSDKWireForm(t, c.name, m, c.structured, c.time, c.contentType)
		}

		e.waitEffects(t, len(cases), 10*time.Second)
		mu.Lock()
		defer mu.Unlock()
		for n, c := range cases {
			w := want[n]
			g, ok := got[w.ID]
			switch {
			case !ok:
				t.Errorf("%s: the handler never got event %s", c.name, w.ID)
			case g.ID != w.ID || g.Type != w.Type || g.Source != w.Source || g.Subject != w.Subject || !g.Time.Equal(w.Time):
				t.Errorf("%s: handler got %+v, want %+v", c.name, g, w)
			case !jsonEqual(g.Data, w.Data):
				t.Errorf("%s: handler got data %s, want %s", c.name, g.Data, w.Data)
			}
		}
	})
}

// checkSDKWireForm checks that the SDK wrote what these tests claim to
// cover: in binary mode ce-* headers with datacontenttype in
// ce-datacontenttype (not content-type) and ce-time only if set; in
// structured mode no headers and the JSON event as the payload.
func checkSDKWireForm(t *testing.T, name string, m *nats.Msg, structured, withTime bool, contentType string) {
	t.Helper()
	if structured {
		if len(m.Header) != 0 || !bytes.Contains(m.Data, []byte(`"specversion":"1.0"`)) {
			t.Fatalf("%s: the SDK sent headers %v and payload %s, want a JSON event and no headers", name, m.Header, m.Data)
		}
		return
	}
	_, hasTime := m.Header[hdrTime]
	if m.Header.Get(hdrSpecVersion) != "1.0" || m.Header.Get(hdrDataContentType) != contentType || m.Header.Get(hdrContentType) != "" || hasTime != withTime {
		t.Fatalf("%s: the SDK sent headers %v", name, m.Header)
	}
}

// TestCloudEventsToSDK reads an event as Souk's relay publishes it with
// the SDK's NATS JetStream binding and checks that the SDK sees a valid
// binary-mode CloudEvent with every attribute and the data Souk wrote.
func TestCloudEventsToSDK(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
		sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
		ctx := trace.ContextWithRemoteSpanContext(context.Background(),
			trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
		wire, err := e.nc.SubscribeSync(e.typ)
		if err != nil {
			t.Fatal(err)
		}
		var sent Event
		err = e.outbox.Do(ctx, func(tx *sql.Tx) error {
			if sent, err = New(ctx, e.typ, "order-1", map[string]any{"n": 1, "note": "ünïcode"}); err != nil {
				return err
			}
			return e.outbox.Write(ctx, tx, sent)
		})
		if err != nil {
			t.Fatal(err)
		}
		e.startRelay(t)
		m, err := wire.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(hdrTraceParent) == "" {
			t.Fatalf("the relay's message has no traceparent: %v", m.Header)
		}

		msg := cejs.NewMessage(m)
		if enc := msg.ReadEncoding(); enc != binding.EncodingBinary {
			t.Fatalf("the SDK reads Souk's message as %v, want binary", enc)
		}
		got, err := binding.ToEvent(context.Background(), msg)
		if err != nil {
			t.Fatalf("the SDK cannot read Souk's message (headers %v): %v", m.Header, err)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("the SDK's validation of Souk's event: %v", err)
		}
		want := []struct {
			attr      string
			got, want any
		}{
			{"specversion", got.SpecVersion(), "1.0"},
			{"id", got.ID(), sent.ID},
			{"source", got.Source(), sent.Source},
			{"type", got.Type(), sent.Type},
			{"subject", got.Subject(), "order-1"},
			{"time", got.Time().UTC(), sent.Time},
			{"datacontenttype", got.DataContentType(), "application/json"},
			{"dataschema", got.DataSchema(), ""},
			{"extensions", len(got.Extensions()), 0},
		}
		for _, w := range want {
			if w.got != w.want {
				t.Errorf("%s: the SDK read %v, Souk wrote %v", w.attr, w.got, w.want)
			}
		}
		if !bytes.Equal(got.Data(), sent.Data) {
			t.Errorf("data: the SDK read %s, Souk wrote %s", got.Data(), sent.Data)
		}
		var d struct{ Note string }
		if err := got.DataAs(&d); err != nil || d.Note != "ünïcode" {
			t.Errorf("the SDK's DataAs: %+v, %v", d, err)
		}
	})
}

// TestCloudEventsWireForm pins the headers of Souk's own events: the relay
// publishes exactly these, the broker dedupes by Nats-Msg-Id, and
// consumers continue the trace from traceparent.
func TestCloudEventsWireForm(t *testing.T) {
	ev := Event{
		ID: "0190f2a4-7c3e-7b1a-9d2e-5f6a7b8c9d0e", Type: "souk.orders.v1.OrderPlaced", Source: "/souk/orders",
		Subject: "0190f2a4-0000-7000-8000-000000000001", Time: time.Date(2026, 11, 25, 9, 30, 1, 123456000, time.UTC),
		Data:        json.RawMessage(`{"order_id":"0190f2a4-0000-7000-8000-000000000001"}`),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "souk=1",
	}
	m := ev.Msg()
	want := nats.Header{
		"ce-specversion": {"1.0"},
		"ce-id":          {ev.ID},
		"ce-type":        {"souk.orders.v1.OrderPlaced"},
		"ce-source":      {"/souk/orders"},
		"ce-subject":     {ev.Subject},
		"ce-time":        {"2026-11-25T09:30:01.123456Z"},
		"content-type":   {"application/json"},
		"Nats-Msg-Id":    {ev.ID},
		"traceparent":    {ev.TraceParent},
		"tracestate":     {"souk=1"},
	}
	if m.Subject != ev.Type || !maps.EqualFunc(m.Header, want, slices.Equal) || !bytes.Equal(m.Data, ev.Data) {
		t.Fatalf("Msg() = %s %v %s\nwant    %s %v %s", m.Subject, m.Header, m.Data, ev.Type, want, ev.Data)
	}

	// An event without a time (one decoded from another producer) goes
	// out without ce-time rather than with year 1.
	ev.Time = time.Time{}
	if _, ok := ev.Msg().Header[hdrTime]; ok {
		t.Errorf("Msg() of an event without a time has ce-time %q", ev.Msg().Header.Get(hdrTime))
	}

	// Values the binding says must be percent-encoded are, and come back.
	ev.Subject = `50% "off" ünï`
	m = ev.Msg()
	if got := m.Header.Get(hdrSubject); got != "50%25%20%22off%22%20%C3%BCn%C3%AF" {
		t.Errorf("ce-subject of %q is %q", ev.Subject, got)
	}
	back, err := Decode(m.Subject, m.Header, m.Data)
	if err != nil || back.Subject != ev.Subject {
		t.Errorf("Decode(Msg()) subject = %q, %v; want %q", back.Subject, err, ev.Subject)
	}
}

// soukMsg is a valid event as Msg writes it, for the tables to vary.
func soukMsg() *nats.Msg {
	return Event{
		ID: "id-1", Type: "souk.users.v1.UserRegistered", Source: "/souk/users", Subject: "u1",
		Time: time.Date(2026, 11, 25, 9, 30, 1, 0, time.UTC), Data: json.RawMessage(`{"id":"u1"}`),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}.Msg()
}

// structuredMsg is a message in structured mode on the subject of
// soukMsg, with the JSON event members and the headers given.
func structuredMsg(members string, header ...string) *nats.Msg {
	m := nats.NewMsg("souk.users.v1.UserRegistered")
	for i := 0; i+1 < len(header); i += 2 {
		m.Header.Set(header[i], header[i+1])
	}
	m.Data = []byte(members)
	return m
}

// binaryMsg is soukMsg changed by fn.
func binaryMsg(fn func(m *nats.Msg)) *nats.Msg {
	m := soukMsg()
	fn(m)
	return m
}

// withHeader returns fn's changes to a header: a value to set, or "" to
// delete it.
func withHeader(kv ...string) func(m *nats.Msg) {
	return func(m *nats.Msg) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				m.Header.Del(kv[i])
			} else {
				m.Header.Set(kv[i], kv[i+1])
			}
		}
	}
}

// TestCloudEventsDecodeAccepts decodes valid CloudEvents in the forms other
// producers may send them.
func TestCloudEventsDecodeAccepts(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	at := time.Date(2026, 11, 25, 9, 30, 1, 0, time.UTC)
	base := Event{ID: "id-1", Type: "souk.users.v1.UserRegistered", Source: "/souk/users", Subject: "u1",
		Time: at, Data: json.RawMessage(`{"id":"u1"}`), TraceParent: tp}
	change := func(fn func(e *Event)) Event { e := base; fn(&e); return e }
	cases := []struct {
		name string
		msg  *nats.Msg
		want Event
	}{
		{"Souk's own", soukMsg(), base},
		{"header names in other cases", binaryMsg(func(m *nats.Msg) {
			for k, v := range m.Header {
				delete(m.Header, k)
				m.Header[strings.ToUpper(k[:1])+k[1:]] = v // Ce-id, Content-type, Traceparent
			}
		}), base},
		{"ce-datacontenttype, no content-type", binaryMsg(withHeader(hdrContentType, "", hdrDataContentType, "application/json")), base},
		{"ce-datacontenttype wins over content-type", binaryMsg(withHeader(hdrContentType, "text/plain", hdrDataContentType, "application/json")), base},
		{"a charset", binaryMsg(withHeader(hdrContentType, "", hdrDataContentType, "application/json; charset=utf-8")), base},
		{"a +json type", binaryMsg(withHeader(hdrContentType, "application/vnd.souk.user+json")), base},
		{"text/json", binaryMsg(withHeader(hdrContentType, "text/json")), base},
		{"no datacontenttype", binaryMsg(withHeader(hdrContentType, "")), base},
		{"no time", binaryMsg(withHeader(hdrTime, "")), change(func(e *Event) { e.Time = time.Time{} })},
		{"time with an offset and lower-case t", binaryMsg(withHeader(hdrTime, "2026-11-25t11:30:01+02:00")), base},
		{"no subject", binaryMsg(withHeader(hdrSubject, "")), change(func(e *Event) { e.Subject = "" })},
		{"percent-encoded values", binaryMsg(withHeader(hdrSubject, "u%201%c3%bc", hdrID, "id%2D1")), change(func(e *Event) { e.Subject = "u 1ü" })},
		{"a double-quoted value", binaryMsg(withHeader(hdrSubject, `"u\"1"`)), change(func(e *Event) { e.Subject = `u"1` })},
		{"trace context in the tracing extension", binaryMsg(withHeader(hdrTraceParent, "", "ce-traceparent", tp)), base},
		{"no trace context", binaryMsg(withHeader(hdrTraceParent, "")), change(func(e *Event) { e.TraceParent = "" })},
		{"extensions", binaryMsg(withHeader("ce-partitionkey", "u1", "ce-comexampleext", "x")), base},

		{"structured", structuredMsg(`{"specversion":"1.0","id":"id-1","source":"/souk/users","type":"souk.users.v1.UserRegistered",
			"subject":"u1","time":"2026-11-25T09:30:01Z","datacontenttype":"application/json","data":{"id":"u1"}}`,
			hdrContentType, "application/cloudevents+json; charset=UTF-8", hdrTraceParent, tp), base},
		{"structured without headers", structuredMsg(`{"specversion":"1.0","id":"id-1","source":"/souk/users",
			"type":"souk.users.v1.UserRegistered","subject":"u1","traceparent":"` + tp + `","data":{"id":"u1"}}`),
			change(func(e *Event) { e.Time = time.Time{} })},
		{"structured with nulls", structuredMsg(`{"specversion":"1.0","id":"id-1","source":"/souk/users",
			"type":"souk.users.v1.UserRegistered","subject":null,"time":null,"datacontenttype":null,"data":null}`),
			Event{ID: "id-1", Type: base.Type, Source: base.Source, Data: json.RawMessage("null")}},
		{"structured with data_base64", structuredMsg(`{"specversion":"1.0","id":"id-1","source":"/souk/users",
			"type":"souk.users.v1.UserRegistered","subject":"u1","time":"2026-11-25T09:30:01Z",
			"datacontenttype":"application/json","data_base64":"eyJpZCI6InUxIn0=","ext":5}`),
			change(func(e *Event) { e.TraceParent = "" })},
	}
	for _, c := range cases {
		got, err := Decode(c.msg.Subject, c.msg.Header, c.msg.Data)
		if err != nil {
			t.Errorf("%s: Decode(%v, %s) = %v", c.name, c.msg.Header, c.msg.Data, err)
			continue
		}
		w := c.want
		if got.ID != w.ID || got.Type != w.Type || got.Source != w.Source || got.Subject != w.Subject ||
			!got.Time.Equal(w.Time) || got.TraceParent != w.TraceParent || !jsonEqual(got.Data, w.Data) {
			t.Errorf("%s: Decode(%v, %s) =\n%+v, want\n%+v", c.name, c.msg.Header, c.msg.Data, got, w)
		}
	}
}

// TestCloudEventsDecodeMalformed checks that what is not a valid Souk
// event, in either mode, is ErrMalformed and so goes to the dead letters.
func TestCloudEventsDecodeMalformed(t *testing.T) {
	const ok = `"specversion":"1.0","id":"id-1","source":"/souk/users","type":"souk.users.v1.UserRegistered"`
	cases := []struct {
		name string
		msg  *nats.Msg
	}{
		{"no specversion", binaryMsg(withHeader(hdrSpecVersion, ""))},
		{"specversion 0.3", binaryMsg(withHeader(hdrSpecVersion, "0.3"))},
		{"no id", binaryMsg(withHeader(hdrID, ""))},
		{"an empty id", binaryMsg(func(m *nats.Msg) { m.Header[hdrID] = []string{""} })},
		{"no source", binaryMsg(withHeader(hdrSource, ""))},
		{"no type", binaryMsg(withHeader(hdrType, ""))},
		{"type not the subject", binaryMsg(withHeader(hdrType, "souk.users.v1.Other"))},
		{"type not Souk's", binaryMsg(func(m *nats.Msg) { m.Subject = "com.example.user.registered"; m.Header.Set(hdrType, m.Subject) })},
		{"type without a version", binaryMsg(func(m *nats.Msg) { m.Subject = "souk.users.UserRegistered"; m.Header.Set(hdrType, m.Subject) })},
		{"bad time", binaryMsg(withHeader(hdrTime, "yesterday"))},
		{"other content type", binaryMsg(withHeader(hdrContentType, "text/plain"))},
		{"other datacontenttype", binaryMsg(withHeader(hdrDataContentType, "application/xml"))},
		{"unparsable datacontenttype", binaryMsg(withHeader(hdrDataContentType, "application/json; charset"))},
		{"data not JSON", binaryMsg(func(m *nats.Msg) { m.Data = []byte("{nope") })},
		{"no data", binaryMsg(func(m *nats.Msg) { m.Data = nil })},
		{"bad percent-encoding", binaryMsg(withHeader(hdrID, "id%zz"))},
		{"percent-encoding that is not UTF-8", binaryMsg(withHeader(hdrSubject, "u%C0%A0"))},
		{"no headers", binaryMsg(func(m *nats.Msg) { m.Header = nats.Header{} })},
		{"garbage, no headers", structuredMsg("\x00\x01 not an event")},

		{"structured, not an object", structuredMsg(`[1,2]`, hdrContentType, contentEventJSON)},
		{"structured in another format", structuredMsg(`{`+ok+`,"data":{}}`, hdrContentType, "application/cloudevents+protobuf")},
		{"structured batch", structuredMsg(`[{`+ok+`,"data":{}}]`, hdrContentType, "application/cloudevents-batch+json")},
		{"structured, no id", structuredMsg(`{"specversion":"1.0","source":"/souk/users","type":"souk.users.v1.UserRegistered","data":{}}`)},
		{"structured, no source", structuredMsg(`{"specversion":"1.0","id":"id-1","type":"souk.users.v1.UserRegistered","data":{}}`)},
		{"structured, no type", structuredMsg(`{"specversion":"1.0","id":"id-1","source":"/souk/users","data":{}}`)},
		{"structured, no specversion", structuredMsg(`{"id":"id-1","source":"/souk/users","type":"souk.users.v1.UserRegistered","data":{}}`)},
		{"structured, id not a string", structuredMsg(`{"specversion":"1.0","id":1,"source":"/souk/users","type":"souk.users.v1.UserRegistered","data":{}}`)},
		{"structured, type not the subject", structuredMsg(`{"specversion":"1.0","id":"id-1","source":"/souk/users","type":"souk.users.v1.Other","data":{}}`)},
		{"structured, bad time", structuredMsg(`{` + ok + `,"time":"soon","data":{}}`)},
		{"structured, no data", structuredMsg(`{` + ok + `}`)},
		{"structured, data and data_base64", structuredMsg(`{` + ok + `,"datacontenttype":"application/json","data":{},"data_base64":"e30="}`)},
		{"structured, data_base64 without datacontenttype", structuredMsg(`{` + ok + `,"data_base64":"e30="}`)},
		{"structured, data_base64 not base64", structuredMsg(`{` + ok + `,"datacontenttype":"application/json","data_base64":"!!"}`)},
		{"structured, data_base64 not JSON", structuredMsg(`{` + ok + `,"datacontenttype":"application/json","data_base64":"bm9wZQ=="}`)},
		{"structured, text data", structuredMsg(`{` + ok + `,"datacontenttype":"text/plain","data":"hello"}`)},
	}
	for _, c := range cases {
		if got, err := Decode(c.msg.Subject, c.msg.Header, c.msg.Data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode(%q, %v, %q) = %+v, %v; want ErrMalformed", c.name, c.msg.Subject, c.msg.Header, c.msg.Data, got, err)
		}
	}
}

// jsonEqual reports whether a and b are the same JSON, whatever their
// spacing.
func jsonEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// TestEventID checks that a dead letter is listed by its event's id in
// either mode and in any header case, even when the event is malformed.
func TestEventID(t *testing.T) {
	for _, c := range []struct {
		name   string
		header nats.Header
		data   string
	}{
		{"binary", nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"e1"}}, `{}`},
		{"binary, other case", nats.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"e1"}}, `{}`},
		{"binary, malformed", nats.Header{"ce-specversion": {"0.3"}, "ce-id": {"e1"}, "Souk-Dead-Reason": {"x"}}, `not json`},
		{"structured", nats.Header{"Souk-Dead-Reason": {"x"}}, `{"specversion":"1.0","id":"e1","data":{}}`},
	} {
		if got := eventID(c.header, []byte(c.data)); got != "e1" {
			t.Errorf("%s: id %q, want e1", c.name, got)
		}
	}
}
