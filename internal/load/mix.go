package load

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The shop's operations, as the mix names them.
const (
	OpBrowse = "browse" // GET /api/products, page after page
	OpSearch = "search" // GET /api/products?q=
	OpView   = "view"   // GET /api/products/{id}, then GET /api/inventory/{id}
	OpSignup = "signup" // POST /api/auth/register
	OpLogin  = "login"  // POST /api/auth/login
	OpOrder  = "order"  // POST /api/orders with an Idempotency-Key
	// OpFollow is not in the mix: each placed order is followed with GET
	// /api/orders/{id} until it is confirmed or cancelled.
	OpFollow = "follow"
)

// ops are the operations a mix may weigh, in the order reports list them.
var ops = []string{OpBrowse, OpSearch, OpView, OpSignup, OpLogin, OpOrder}

// DefaultMix is a shop's day in miniature: mostly reading, a quarter of
// the operations orders, a few sign-ups and logins.
const DefaultMix = "browse=30,search=15,view=25,signup=2,login=3,order=25"

// Mix is a weighted choice of operations.
type Mix struct {
	names []string
	cum   []float64 // cumulative weights
}

// ParseMix reads "browse=30,order=25,…". Weights are relative; an
// operation left out is never chosen.
func ParseMix(s string) (Mix, error) {
	var m Mix
	total := 0.0
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, w, ok := strings.Cut(item, "=")
		if !ok {
			return m, fmt.Errorf("mix item %q: want name=weight", item)
		}
		if !slices.Contains(ops, name) {
			return m, fmt.Errorf("mix item %q: no operation %q; there are %s", item, name, strings.Join(ops, ", "))
		}
		if seen[name] {
			return m, fmt.Errorf("mix item %q: %s is named twice", item, name)
		}
		seen[name] = true
		weight, err := strconv.ParseFloat(w, 64)
		if err != nil || weight < 0 {
			return m, fmt.Errorf("mix item %q: the weight must be a number ≥ 0", item)
		}
		if weight == 0 {
			continue
		}
		total += weight
		m.names = append(m.names, name)
		m.cum = append(m.cum, total)
	}
	if total == 0 {
		return m, fmt.Errorf("mix %q: no operation has a weight", s)
	}
	return m, nil
}

// Pick chooses an operation with the probability of its weight.
func (m Mix) Pick(r *rand.Rand) string {
	x := r.Float64() * m.cum[len(m.cum)-1]
	i, _ := slices.BinarySearchFunc(m.cum, x, func(c, x float64) int {
		if c <= x {
			return -1
		}
		return 1
	})
	return m.names[min(i, len(m.names)-1)]
}

// Share is the fraction of operations that are op.
func (m Mix) Share(op string) float64 {
	prev := 0.0
	for i, name := range m.names {
		if name == op {
			return (m.cum[i] - prev) / m.cum[len(m.cum)-1]
		}
		prev = m.cum[i]
	}
	return 0
}

// String gives the mix back in ParseMix's form.
func (m Mix) String() string {
	var parts []string
	prev := 0.0
	for i, name := range m.names {
		parts = append(parts, name+"="+strconv.FormatFloat(m.cum[i]-prev, 'g', -1, 64))
		prev = m.cum[i]
	}
	return strings.Join(parts, ",")
}

// Schedule says when each request of an open-loop run is meant to start:
// request i at Start + i/Rate, whether or not earlier ones have finished,
// until Duration has passed or Requests were scheduled (each bound applies
// when it is not zero). Latency is measured from these times, so a server
// that stalls shows as latency rather than as requests never sent.
type Schedule struct {
	Rate     float64 // requests per second
	Duration time.Duration
	Requests int
}

// At is when request i is meant to start, after the run's start, and
// whether the run schedules it at all.
func (s Schedule) At(i int) (time.Duration, bool) {
	if i < 0 || (s.Requests > 0 && i >= s.Requests) {
		return 0, false
	}
	at := time.Duration(float64(i) / s.Rate * float64(time.Second))
	if s.Duration > 0 && at >= s.Duration {
		return 0, false
	}
	return at, true
}

// Len is how many requests the schedule holds.
func (s Schedule) Len() int {
	n := s.Requests
	if s.Duration > 0 {
		// The requests whose time falls before Duration: ceil(rate·d).
		byTime := int(s.Duration.Seconds() * s.Rate)
		if float64(byTime) < s.Duration.Seconds()*s.Rate {
			byTime++
		}
		if n == 0 || byTime < n {
			n = byTime
		}
	}
	return n
}
