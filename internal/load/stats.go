package load

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what a run measured. Every latency is in milliseconds, from
// the moment the request was meant to start.
type Report struct {
	Gateway   string    `json:"gateway"`
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"` // how long the schedule ran
	Rate      float64   `json:"rate"`    // operations per second asked for
	Mix       string    `json:"mix"`
	Clients   int       `json:"clients"`
	Addresses int       `json:"addresses"` // distinct source addresses

	Requests    int64     `json:"requests"` // every request, follows included
	Errors      int64     `json:"errors"`
	SuccessRate float64   `json:"success_rate"` // at the first attempt, 0 to 1
	Operations  []OpStats `json:"operations"`

	// Timeline has a point per second of the run, by when requests were
	// meant to start, drain included.
	Timeline []Second `json:"timeline"`
	// SecondsBelow90 and SecondsBelow99 count the seconds whose success
	// rate was under 90% and 99%; the Longest… fields are the longest runs
	// of such seconds.
	SecondsBelow90 int `json:"seconds_below_90"`
	SecondsBelow99 int `json:"seconds_below_99"`
	LongestBelow90 int `json:"longest_below_90"`
	LongestBelow99 int `json:"longest_below_99"`

	Orders Orders `json:"orders"`
	// Marks are moments worth showing on the timeline (faults, in souk
	// chaos), in seconds from the start.
	Marks []Mark `json:"marks,omitempty"`
}

// OpStats is one operation's figures.
type OpStats struct {
	Name   string  `json:"name"`
	Count  int64   `json:"count"`
	Rate   float64 `json:"rate"` // per second of the schedule
	Errors int64   `json:"errors"`
	// ErrorsBy counts errors by status ("503") or kind ("timeout",
	// "connection refused").
	ErrorsBy map[string]int64 `json:"errors_by,omitempty"`
	Latency  Percentiles      `json:"latency_ms"`
	// Headroom is the least a RateLimit header said was left, as
	// `"address";r=3`: how close these clients came to a limit.
	Headroom string `json:"headroom,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// Second is one second of the timeline.
type Second struct {
	T        int     `json:"t"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// SuccessRate is the share of the second's requests that succeeded; 1
// for a second without requests.
func (s Second) SuccessRate() float64 {
	if s.Requests == 0 {
		return 1
	}
	return float64(s.Requests-s.Errors) / float64(s.Requests)
}

// Orders are the outcomes of the orders the run placed.
type Orders struct {
	Placed    int64 `json:"placed"`
	Confirmed int64 `json:"confirmed"`
	// Cancelled counts cancelled orders by reason (declined, out_of_stock,
	// deadline, …). A declined card is the system working.
	Cancelled map[string]int64 `json:"cancelled,omitempty"`
	// Open were neither confirmed nor cancelled when following them
	// stopped (--follow after their placement).
	Open int64 `json:"open"`
	// Failed are placements that got an error (a 5xx, a timeout, no
	// answer); each is an error above. After the run the same request is
	// sent again, with the same Idempotency-Key: GotThrough counts those
	// the system had placed all the same (it answers 200), NotThrough those
	// it had not (201: placed only now, and followed like the others),
	// Unknown those whose second try failed too.
	Failed     int64 `json:"failed"`
	GotThrough int64 `json:"got_through"`
	NotThrough int64 `json:"not_through"`
	Unknown    int64 `json:"unknown"`
}

// Terminal is how many placed orders ended, one way or the other.
func (o Orders) Terminal() int64 {
	n := o.Confirmed
	for _, c := range o.Cancelled {
		n += c
	}
	return n
}

// Mark is a labelled moment of the run.
type Mark struct {
	At    float64 `json:"at"` // seconds from the start
	Label string  `json:"label"`
}

// Histograms hold microseconds from 1 µs to 10 minutes: three significant
// figures for an operation, two for a second of the timeline (600 of
// those stay small).
const maxMicros = int64(10 * time.Minute / time.Microsecond)

func newHist(sigfigs int) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, maxMicros, sigfigs)
}

// recorder collects results from every goroutine of a run.
type recorder struct {
	start time.Time

	mu       sync.Mutex
	ops      map[string]*opRecord
	timeline []*secondRecord
	orders   Orders
}

type opRecord struct {
	count, errors int64
	by            map[string]int64
	hist          *hdrhistogram.Histogram
	headroom      int // least remaining seen, -1 for none
	headroomBy    string
}

type secondRecord struct {
	requests, errors int64
	hist             *hdrhistogram.Histogram
}

func newRecorder(start time.Time) *recorder {
	r := &recorder{start: start, ops: map[string]*opRecord{}}
	r.orders.Cancelled = map[string]int64{}
	return r
}

// record notes one request of op, meant to start at intended and done
// after latency; failure is "" for a success, else a status or a kind.
func (r *recorder) record(op string, intended time.Time, latency time.Duration, failure string) {
	us := min(max(latency.Microseconds(), 1), maxMicros)
	sec := max(int(intended.Sub(r.start)/time.Second), 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops[op]
	if o == nil {
		o = &opRecord{by: map[string]int64{}, hist: newHist(3), headroom: -1}
		r.ops[op] = o
	}
	o.count++
	_ = o.hist.RecordValue(us)
	for len(r.timeline) <= sec {
		r.timeline = append(r.timeline, &secondRecord{hist: newHist(2)})
	}
	s := r.timeline[sec]
	s.requests++
	_ = s.hist.RecordValue(us)
	if failure != "" {
		o.errors++
		o.by[failure]++
		s.errors++
	}
}

// headroom notes what a RateLimit header said was left.
func (r *recorder) headroom(op, header string) {
	name, left, ok := leastRemaining(header)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.ops[op]; o != nil && (o.headroom < 0 || left < o.headroom) {
		o.headroom, o.headroomBy = left, name
	}
}

// leastRemaining reads a RateLimit header (`"address";r=97;t=1,
// "user";r=3;t=5`) and returns the item with the least left.
func leastRemaining(header string) (string, int, bool) {
	best, name, found := 0, "", false
	for item := range strings.SplitSeq(header, ",") {
		params := strings.Split(strings.TrimSpace(item), ";")
		for _, p := range params[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if k != "r" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				continue
			}
			if !found || n < best {
				best, name, found = n, strings.Trim(params[0], `"`), true
			}
		}
	}
	return name, best, found
}

// order notes an order's end: "confirmed", "cancelled" with a reason, or
// "open".
func (r *recorder) order(status, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch status {
	case "confirmed":
		r.orders.Confirmed++
	case "cancelled":
		if reason == "" {
			reason = "unknown"
		}
		r.orders.Cancelled[reason]++
	default:
		r.orders.Open++
	}
}

func (r *recorder) addOrders(f func(*Orders)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.orders)
}

// report turns what was recorded into a Report; ran is how long the
// schedule ran, for rates.
func (r *recorder) report(ran time.Duration) Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Report{Started: r.start, Seconds: ran.Seconds()}
	names := slices.Sorted(maps.Keys(r.ops))
	slices.SortStableFunc(names, func(a, b string) int { return opOrder(a) - opOrder(b) })
	for _, name := range names {
		o := r.ops[name]
		st := OpStats{Name: name, Count: o.count, Errors: o.errors, Latency: percentiles(o.hist)}
		if ran > 0 {
			st.Rate = float64(o.count) / ran.Seconds()
		}
		if len(o.by) > 0 {
			st.ErrorsBy = maps.Clone(o.by)
		}
		if o.headroom >= 0 {
			st.Headroom = strconv.Quote(o.headroomBy) + ";r=" + strconv.Itoa(o.headroom)
		}
		rep.Operations = append(rep.Operations, st)
		rep.Requests += o.count
		rep.Errors += o.errors
	}
	rep.SuccessRate = 1
	if rep.Requests > 0 {
		rep.SuccessRate = float64(rep.Requests-rep.Errors) / float64(rep.Requests)
	}
	for i, s := range r.timeline {
		p := percentiles(s.hist)
		rep.Timeline = append(rep.Timeline, Second{T: i, Requests: s.requests, Errors: s.errors, P50: p.P50, P99: p.P99, Max: p.Max})
	}
	rep.SecondsBelow90, rep.LongestBelow90 = below(rep.Timeline, 0.90)
	rep.SecondsBelow99, rep.LongestBelow99 = below(rep.Timeline, 0.99)
	rep.Orders = r.orders
	rep.Orders.Cancelled = maps.Clone(r.orders.Cancelled)
	return rep
}

// opOrder sorts operations as the mix lists them, follow after order.
func opOrder(name string) int {
	if name == OpFollow {
		return len(ops)
	}
	if i := slices.Index(ops, name); i >= 0 {
		return i
	}
	return len(ops) + 1
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
	}
}

// below counts the seconds whose success rate is under threshold, and
// the longest run of consecutive such seconds. Seconds without requests
// neither count nor break a run.
func below(timeline []Second, threshold float64) (count, longest int) {
	run := 0
	for _, s := range timeline {
		if s.Requests == 0 {
			continue
		}
		if s.SuccessRate() < threshold {
			count++
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return count, longest
}

// Recovery is how long after a fault at second `at` the success rate was
// back at or above threshold: 0 if no second under threshold began within
// `window` seconds of the fault (the fault did no harm seen from outside),
// else the seconds from the fault to the first good second after the
// first bad one; -1 if the run ended before that.
func Recovery(timeline []Second, at float64, threshold float64, window int) int {
	from := int(at)
	bad := -1
	for i := from; i < len(timeline) && i <= from+window; i++ {
		if timeline[i].Requests > 0 && timeline[i].SuccessRate() < threshold {
			bad = i
			break
		}
	}
	if bad < 0 {
		return 0
	}
	for i := bad + 1; i < len(timeline); i++ {
		if timeline[i].Requests > 0 && timeline[i].SuccessRate() >= threshold {
			return i - from
		}
	}
	return -1
}
