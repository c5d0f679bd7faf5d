package load

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{in: DefaultMix},
		{in: "order=1"},
		{in: " browse = 2 , order=1", err: "no operation"},
		{in: "browse=2,,order=0.5"},
		{in: "", err: "no operation has a weight"},
		{in: "order=0", err: "no operation has a weight"},
		{in: "checkout=3", err: `no operation "checkout"`},
		{in: "order", err: "want name=weight"},
		{in: "order=-1", err: "≥ 0"},
		{in: "order=1,order=2", err: "named twice"},
		{in: "follow=1", err: "no operation"},
	} {
		_, err := ParseMix(c.in)
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseMix(%q) = %v, want an error containing %q", c.in, err, c.err)
		}
	}
	m, _ := ParseMix("browse=2,order=0.5")
	if got := m.String(); got != "browse=2,order=0.5" {
		t.Errorf("String() = %q", got)
	}
}

// TestMixPick checks that each operation is chosen in proportion to its
// weight.
func TestMixPick(t *testing.T) {
	m, err := ParseMix(DefaultMix)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200_000
	got := map[string]int{}
	for range n {
		got[m.Pick(r)]++
	}
	for _, op := range ops {
		want := m.Share(op)
		share := float64(got[op]) / n
		if math.Abs(share-want) > 0.005 {
			t.Errorf("%s chosen %.4f of the time, want %.4f", op, share, want)
		}
	}
	if s := m.Share(OpOrder); s != 0.25 {
		t.Errorf("the default mix orders %.2f of the time, want 0.25", s)
	}
	if m.Share("follow") != 0 {
		t.Error("follow has a share")
	}
}

func TestSchedule(t *testing.T) {
	for _, c := range []struct {
		s    Schedule
		want int
	}{
		{Schedule{Rate: 10, Duration: time.Second}, 10},
		{Schedule{Rate: 10, Duration: 1050 * time.Millisecond}, 11},
		{Schedule{Rate: 3, Duration: time.Second}, 3},
		{Schedule{Rate: 30, Duration: 60 * time.Second}, 1800},
		{Schedule{Rate: 7, Requests: 5}, 5},
		{Schedule{Rate: 100, Duration: time.Second, Requests: 40}, 40},
		{Schedule{Rate: 100, Duration: 100 * time.Millisecond, Requests: 40}, 10},
	} {
		n := 0
		last := time.Duration(-1)
		for i := 0; ; i++ {
			at, ok := c.s.At(i)
			if !ok {
				break
			}
			if at <= last {
				t.Fatalf("%+v: request %d at %v, not after %v", c.s, i, at, last)
			}
			if want := time.Duration(float64(i) / c.s.Rate * float64(time.Second)); at != want {
				t.Errorf("%+v: request %d at %v, want %v", c.s, i, at, want)
			}
			last = at
			n++
		}
		if n != c.want || c.s.Len() != c.want {
			t.Errorf("%+v: %d requests scheduled, Len %d, want %d", c.s, n, c.s.Len(), c.want)
		}
	}
}

func TestBelowAndRecovery(t *testing.T) {
	// Success rates per second: 100 100 95 80 85 100 99.5 0-requests 50 100
	tl := []Second{
		{T: 0, Requests: 100}, {T: 1, Requests: 100}, {T: 2, Requests: 100, Errors: 5},
		{T: 3, Requests: 100, Errors: 20}, {T: 4, Requests: 100, Errors: 15}, {T: 5, Requests: 100},
		{T: 6, Requests: 200, Errors: 1}, {T: 7}, {T: 8, Requests: 10, Errors: 5}, {T: 9, Requests: 10},
	}
	if n, l := below(tl, 0.99); n != 4 || l != 3 {
		t.Errorf("below 99%%: %d seconds, longest %d; want 4, 3", n, l)
	}
	if n, l := below(tl, 0.90); n != 3 || l != 2 {
		t.Errorf("below 90%%: %d seconds, longest %d; want 3, 2", n, l)
	}
	for _, c := range []struct {
		at   float64
		want int
	}{
		{0.5, 5},  // the first bad second is 2, the first good after it 5
		{2.2, 3},  // from second 2
		{5, 4},    // 6 is good; 8 is bad within the window; 9 is good
		{6.0, 3},  // 8 bad, 9 good
		{9, 0},    // nothing bad after
		{-3, 5},   // before the start counts from 0… within the window
		{100, 0},  // after the end
		{3.9, 2},  // bad at 3, good at 5
		{1, 4},    // bad at 2, good at 5
		{7.5, 2},  // second 7 had no requests; 8 bad, 9 good
		{4, 1},    // bad at 4, good at 5
		{4.99, 1}, // the same second
	} {
		if got := Recovery(tl, max(c.at, 0), 0.99, 5); got != c.want {
			t.Errorf("Recovery(at %v) = %d, want %d", c.at, got, c.want)
		}
	}
	if got := Recovery(tl[:5], 2, 0.99, 5); got != -1 {
		t.Errorf("Recovery with no good second after the fault = %d, want -1", got)
	}
}

func TestLeastRemaining(t *testing.T) {
	for _, c := range []struct {
		in   string
		name string
		left int
		ok   bool
	}{
		{`"address";r=97;t=1`, "address", 97, true},
		{`"address";r=97;t=1, "user";r=3;t=5`, "user", 3, true},
		{`"address";t=1`, "", 0, false},
		{``, "", 0, false},
		{`"user";r=x`, "", 0, false},
	} {
		name, left, ok := leastRemaining(c.in)
		if name != c.name || left != c.left || ok != c.ok {
			t.Errorf("leastRemaining(%q) = %q, %d, %v; want %q, %d, %v", c.in, name, left, ok, c.name, c.left, c.ok)
		}
	}
}

// TestReport records a known set of results and checks the report's
// arithmetic: counts, rates, errors by kind, percentiles, the timeline.
func TestReport(t *testing.T) {
	start := time.Unix(1000, 0)
	r := newRecorder(start)
	for i := range 100 {
		// 1 ms … 100 ms, one per 10 ms over the first second.
		r.record(OpBrowse, start.Add(time.Duration(i)*10*time.Millisecond), time.Duration(i+1)*time.Millisecond, "")
	}
	r.record(OpOrder, start.Add(1500*time.Millisecond), 2*time.Second, "timeout")
	r.record(OpOrder, start.Add(1600*time.Millisecond), 3*time.Millisecond, "503")
	r.record(OpOrder, start.Add(1700*time.Millisecond), 3*time.Millisecond, "")
	r.headroom(OpBrowse, `"address";r=40;t=1`)
	r.headroom(OpBrowse, `"address";r=12;t=1, "user";r=30;t=1`)
	r.addOrders(func(o *Orders) { o.Placed = 3 })
	r.order("confirmed", "")
	r.order("cancelled", "declined")
	r.order("open", "")
	rep := r.report(2 * time.Second)

	if rep.Requests != 103 || rep.Errors != 2 {
		t.Fatalf("requests %d, errors %d; want 103, 2", rep.Requests, rep.Errors)
	}
	if want := 101.0 / 103; math.Abs(rep.SuccessRate-want) > 1e-9 {
		t.Errorf("success rate %v, want %v", rep.SuccessRate, want)
	}
	if len(rep.Operations) != 2 || rep.Operations[0].Name != OpBrowse || rep.Operations[1].Name != OpOrder {
		t.Fatalf("operations %+v", rep.Operations)
	}
	b, o := rep.Operations[0], rep.Operations[1]
	if b.Rate != 50 || b.Headroom != `"address";r=12` {
		t.Errorf("browse: rate %v, headroom %q", b.Rate, b.Headroom)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.002 }
	if l := b.Latency; !near(l.P50, 50) || !near(l.P90, 90) || !near(l.P99, 99) || !near(l.Max, 100) {
		t.Errorf("browse latency %+v, want p50 50, p90 90, p99 99, max 100", l)
	}
	if o.Errors != 2 || o.ErrorsBy["timeout"] != 1 || o.ErrorsBy["503"] != 1 {
		t.Errorf("order errors %d by %v", o.Errors, o.ErrorsBy)
	}
	if len(rep.Timeline) != 2 || rep.Timeline[0].Requests != 100 || rep.Timeline[1].Requests != 3 || rep.Timeline[1].Errors != 2 {
		t.Fatalf("timeline %+v", rep.Timeline)
	}
	if rep.SecondsBelow90 != 1 || rep.LongestBelow99 != 1 {
		t.Errorf("below 90%%: %d, longest below 99%%: %d", rep.SecondsBelow90, rep.LongestBelow99)
	}
	if ord := rep.Orders; ord.Confirmed != 1 || ord.Cancelled["declined"] != 1 || ord.Open != 1 || ord.Terminal() != 2 {
		t.Errorf("orders %+v", ord)
	}

	var text, svg, page bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"browse", "timeout ×1", "503 ×1", `left "address";r=12`, "98.058% succeeded", "1 confirmed, 1 cancelled (declined 1), 1 still open"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, text.String())
		}
	}
	rep.Marks = []Mark{{At: 1.2, Label: "SIGKILL orders#1 <pid 7>"}}
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg.Bytes(), new(struct{})); err != nil {
		t.Errorf("the SVG is not well-formed XML: %v", err)
	}
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"http://", "https://", "<script"} {
		if s := strings.ReplaceAll(page.String(), "http://www.w3.org/2000/svg", ""); strings.Contains(s, bad) {
			t.Errorf("the page refers to %q: it must need nothing but a browser", bad)
		}
	}
}

func TestSourceAddr(t *testing.T) {
	seen := map[string]int{}
	for i := range 64000 {
		ip := sourceAddr(i)
		if !ip.IsLoopback() || ip.To4() == nil || ip.To4()[3] == 0 || ip.To4()[3] == 255 {
			t.Fatalf("client %d: %v is no usable loopback address", i, ip)
		}
		if j, dup := seen[ip.String()]; dup {
			t.Fatalf("clients %d and %d share %v", j, i, ip)
		}
		seen[ip.String()] = i
	}
	for _, c := range []struct {
		url  string
		want bool
	}{
		{"http://127.0.0.1:8080", true}, {"http://localhost:8080", true}, {"http://127.9.9.9", true},
		{"http://[::1]:8080", false}, {"https://shop.example", false},
	} {
		u, _ := url.Parse(c.url)
		if loopback(u) != c.want {
			t.Errorf("loopback(%s) = %v", c.url, !c.want)
		}
	}
}

func TestErrorKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("Get: %w", os.ErrDeadlineExceeded), "timeout"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection reset"},
		{fmt.Errorf("x: %w", errors.New("EOF")), "network error"},
		{fmt.Errorf("x: %w", io.EOF), "connection closed"},
	} {
		if got := errorKind(c.err); got != c.want {
			t.Errorf("errorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		err  string
	}{
		{func(*Config) {}, ""},
		{func(c *Config) { c.Gateway = "127.0.0.1:8080" }, "--gateway"},
		{func(c *Config) { c.Duration, c.Requests = 0, 0 }, "bound the run"},
		{func(c *Config) { c.Rate = 0 }, "--rate"},
		{func(c *Config) { c.DeclineShare = 2 }, "--decline-share"},
		{func(c *Config) { c.Clients = 0 }, "--clients"},
		{func(c *Config) { c.Products = 0 }, "--products"},
		{func(c *Config) { c.Products, c.Existing = 0, true }, ""},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		err := cfg.Validate()
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", cfg, err, c.err)
		}
	}
}
