package system

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/services/payments"
)

// TestOrderList pages through a customer's orders, newest first, and
// checks who sees whose.
func TestOrderList(t *testing.T) {
	s := newShop(t, nil)
	ada, bob := s.customer("ada"), s.customer("bob")
	lamp := s.product(1000, 100)
	var placed []string
	for i := range 3 {
		placed = append(placed, s.order(ada, "list"+strconv.Itoa(i), lamp, 1, "4242424242424242").json(t)["id"].(string))
	}
	bobs := s.order(bob, "list", lamp, 1, "4242424242424242").json(t)["id"].(string)

	page := func(who []string, query string) (ids []string, next string) {
		t.Helper()
		r := call(t, "GET", s.gw+"/api/orders"+query, "", who...)
		if r.status != 200 {
			t.Fatalf("GET /api/orders%s: %d %s", query, r.status, r.body)
		}
		var p struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		json.Unmarshal(r.body, &p)
		for _, o := range p.Items {
			ids = append(ids, o.ID)
		}
		return ids, p.NextCursor
	}
	first, next := page(ada, "?limit=2")
	if len(first) != 2 || first[0] != placed[2] || first[1] != placed[1] || next == "" {
		t.Fatalf("ada's first page %v (next %q), want the newest two of %v", first, next, placed)
	}
	rest, next := page(ada, "?limit=2&cursor="+next)
	if len(rest) != 1 || rest[0] != placed[0] || next != "" {
		t.Fatalf("ada's second page %v (next %q), want %v alone", rest, next, placed[0])
	}
	if mine, _ := page(bob, ""); len(mine) != 1 || mine[0] != bobs {
		t.Fatalf("bob sees %v, want only his own %s", mine, bobs)
	}
	if all, _ := page(s.admin, "?scope=all"); len(all) != 4 || all[0] != bobs {
		t.Fatalf("an admin's scope=all: %v, want all 4, bob's first", all)
	}
	if r := call(t, "GET", s.gw+"/api/orders?scope=all", "", bob...); r.status != 403 {
		t.Fatalf("a customer asking for everyone's orders: %d, want 403", r.status)
	}
	if r := call(t, "GET", s.gw+"/api/orders", ""); r.status != 401 {
		t.Fatalf("anonymous: %d, want 401", r.status)
	}
	if r := call(t, "GET", s.gw+"/api/orders?cursor=nonsense", "", ada...); r.status != 400 {
		t.Fatalf("a cursor the API never gave: %d, want 400", r.status)
	}
}

// sseEvent is one event read off a text/event-stream.
type sseEvent struct {
	id, event, data string
	at              time.Time
}

// readEvents reads the events of a stream until it ends, and checks the
// exchange against openapi.yaml.
func readEvents(t *testing.T, resp *http.Response) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	var body bytes.Buffer
	defer func() { checkAPI(t, resp.Request, nil, resp, body.Bytes()) }()
	sc := bufio.NewScanner(io.TeeReader(resp.Body, &body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				cur.at = time.Now()
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out
}

// TestOrderStream follows orders through the gateway as Server-Sent
// Events: each step comes as it happens, not when the stream ends, even
// for a client that accepts compression; the stream ends by itself at
// the order's end; Last-Event-ID resumes after what a client saw.
func TestOrderStream(t *testing.T) {
	s := newShop(t, nil)
	ada, bob := s.customer("ada"), s.customer("bob")
	lamp := s.product(1000, 100)

	open := func(who []string, id string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.gw+"/api/orders/"+id+"/stream", nil)
		for i := 0; i+1 < len(who); i += 2 {
			req.Header.Set(who[i], who[i+1])
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	type update struct {
		Order struct {
			Status, Reason string
		} `json:"order"`
		Events []struct {
			Seq  int64  `json:"seq"`
			Type string `json:"type"`
		} `json:"events"`
	}
	decode := func(e sseEvent) update {
		var u update
		if err := json.Unmarshal([]byte(e.data), &u); err != nil {
			t.Fatalf("event data %q: %v", e.data, err)
		}
		return u
	}

	// A provider that times out holds the order for seconds: its first
	// steps must reach the client long before it ends.
	slow := s.order(ada, "slow", lamp, 1, payments.TimeoutCard).json(t)["id"].(string)
	start := time.Now()
	resp := open(ada, slow, "Accept-Encoding", "gzip, zstd")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("stream: %d, Content-Type %q, Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Encoding"))
	}
	events := readEvents(t, resp)
	if len(events) < 2 {
		t.Fatalf("%d events for an order that took %s", len(events), time.Since(start))
	}
	if first, last := events[0], events[len(events)-1]; first.at.Sub(start) > time.Second || last.at.Sub(first.at) < 500*time.Millisecond {
		t.Fatalf("first event after %s, last %s later: the stream was buffered", first.at.Sub(start), last.at.Sub(first.at))
	}
	var seqs []int64
	for _, e := range events {
		for _, le := range decode(e).Events {
			seqs = append(seqs, le.Seq)
		}
	}
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("log entries %v across the events: want each once, in order", seqs)
		}
	}
	if u := decode(events[len(events)-1]); u.Order.Status != "cancelled" || u.Order.Reason != "payment_failed" {
		t.Fatalf("the stream ended at %+v", u.Order)
	}

	// A confirmed order, resumed after its second entry.
	fast := s.order(ada, "fast", lamp, 1, "4242424242424242").json(t)["id"].(string)
	s.settled(ada, fast, 10*time.Second)
	events = readEvents(t, open(ada, fast, "Last-Event-ID", "2"))
	if len(events) != 1 {
		t.Fatalf("%d events for a settled order, want 1", len(events))
	}
	u := decode(events[0])
	if u.Order.Status != "confirmed" || len(u.Events) == 0 || u.Events[0].Seq != 3 || events[0].id != strconv.FormatInt(u.Events[len(u.Events)-1].Seq, 10) {
		t.Fatalf("resumed after 2: id %s, %+v", events[0].id, u)
	}

	if r := open(bob, fast); r.StatusCode != 404 {
		t.Fatalf("bob following ada's order: %d, want 404", r.StatusCode)
	}
	if r := open(nil, fast); r.StatusCode != 401 {
		t.Fatalf("anonymous: %d, want 401", r.StatusCode)
	}
}
