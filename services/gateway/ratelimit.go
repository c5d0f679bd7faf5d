package gateway

import (
	"context"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter keeps token buckets by key (an address, a user, an API key,
// with the route). The limit holds across gateway replicas by splitting it:
// each of n live replicas (as the registry counts them) allows 1/n of it.
// That needs no round trip per request; its cost is that a client whose
// requests all land on one replica gets 1/n of its limit, never more than
// the whole.
type RateLimiter struct {
	replicas func() int
	seed     maphash.Seed
	shards   [32]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[bucketKey]*bucket
}

// bucketKey names a bucket: a route, a dimension and who.
type bucketKey struct {
	route int
	by    string
	who   string
}

type bucket struct {
	lim      *rate.Limiter
	share    int    // the replica count its rate was set for
	policy   string // its RateLimit-Policy item
	lastUsed atomic.Int64
}

// NewRateLimiter returns a limiter that splits limits by replicas() and
// forgets idle buckets until ctx ends.
func NewRateLimiter(ctx context.Context, replicas func() int) *RateLimiter {
	l := &RateLimiter{replicas: replicas, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[bucketKey]*bucket{}
	}
	go l.sweep(ctx)
	return l
}

// Decision is the outcome of Allow, with what the RateLimit headers
// (draft-ietf-httpapi-ratelimit-headers) need.
type Decision struct {
	Allowed bool
	// Policy is the bucket's RateLimit-Policy item, the same for every
	// request: "address";q=<burst>;w=<seconds to fill an empty bucket>.
	Policy string
	// Remaining is how many requests the bucket allows now, after this one.
	Remaining int
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter, when refused, is how long until a token is there.
	RetryAfter time.Duration
}

// Allow takes a token from the bucket of who for route and dimension by,
// made with lim if new.
func (l *RateLimiter) Allow(route int, by, who string, lim Limit) Decision {
	n := max(l.replicas(), 1)
	key := bucketKey{route: route, by: by, who: who}
	sh := &l.shards[(maphash.String(l.seed, who)+uint64(route))%uint64(len(l.shards))]
	sh.mu.Lock()
	b, ok := sh.buckets[key]
	if !ok {
		r, burst := share(lim, n)
		b = &bucket{lim: rate.NewLimiter(r, burst), share: n, policy: policyItem(by, r, burst)}
		sh.buckets[key] = b
	} else if b.share != n {
		r, burst := share(lim, n)
		b.lim.SetLimit(r)
		b.lim.SetBurst(burst)
		b.share, b.policy = n, policyItem(by, r, burst)
	}
	policy := b.policy
	sh.mu.Unlock()
	now := time.Now()
	b.lastUsed.Store(now.UnixNano())
	allowed := b.lim.AllowN(now, 1)
	// Another request may take a token in between: the figures are advice
	// to the client, not the limit.
	tokens := b.lim.TokensAt(now)
	d := Decision{Allowed: allowed, Policy: policy, Remaining: max(0, int(tokens)),
		Reset: time.Duration((float64(b.lim.Burst()) - tokens) / float64(b.lim.Limit()) * float64(time.Second))}
	if !allowed {
		r := b.lim.ReserveN(now, 1)
		d.RetryAfter = r.DelayFrom(now)
		r.CancelAt(now)
	}
	return d
}

// share is one replica's part of lim.
func share(lim Limit, n int) (rate.Limit, int) {
	return rate.Limit(lim.RPS / float64(n)), max(1, int(math.Ceil(float64(lim.Burst)/float64(n))))
}

// policyItem is a bucket's RateLimit-Policy item: its quota is the burst,
// its window the time an empty bucket takes to fill.
func policyItem(by string, r rate.Limit, burst int) string {
	window := int(math.Ceil(float64(burst) / float64(r)))
	return strconv.Quote(by) + ";q=" + strconv.Itoa(burst) + ";w=" + strconv.Itoa(max(window, 1))
}

// sweep forgets buckets unused for ten minutes: a full bucket is the same
// as a new one.
func (l *RateLimiter) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-10 * time.Minute).UnixNano()
		for i := range l.shards {
			sh := &l.shards[i]
			sh.mu.Lock()
			for k, b := range sh.buckets {
				if b.lastUsed.Load() < cutoff {
					delete(sh.buckets, k)
				}
			}
			sh.mu.Unlock()
		}
	}
}
