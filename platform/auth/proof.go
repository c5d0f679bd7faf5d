package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/souk-shop/souk/platform/problem"
)

// Every request to a service carries proof of who sent it: a short-lived
// token in HeaderProof, signed by the sender (the gateway, or the service
// that calls), for the one service it is sent to. Through the gateway it
// carries the user the gateway verified, and the client's address. A
// service believes nothing else: not X-Souk-* headers, not
// X-Forwarded-For. Each process makes its own Ed25519 key at start, and
// publishes the public half under <identity>.<id> in a NATS KV bucket
// that only that identity may write (KeyBucket); a verifier accepts a
// token only if its key id names the identity that signed it.
const (
	HeaderProof = "X-Souk-Proof"
	// KeyBucket holds every process's public key.
	KeyBucket = "souk_identity_keys"
	// GatewayIdentity is the one sender whose proofs may carry a user.
	GatewayIdentity = "gateway"

	proofTTL = time.Minute
)

// Caller is who sent a request to a service: the sender (the gateway, or
// a service), and, through the gateway, the user and the client's address.
type Caller struct {
	Sender string
	Identity
	// Addr is the client's address as the gateway saw it.
	Addr string
}

type callerKey struct{}

// WithCaller returns ctx carrying c: a service's router puts the verified
// caller there.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf returns the verified caller of a request, or the zero Caller.
func CallerOf(r *http.Request) Caller {
	c, _ := r.Context().Value(callerKey{}).(Caller)
	return c
}

// FromRequest returns the user the request was verified to come from
// (anonymous if none).
func FromRequest(r *http.Request) Identity { return CallerOf(r).Identity }

// proofClaims are a proof's claims.
type proofClaims struct {
	jwt.RegisteredClaims        // iss: the sender; aud: the service; sub: the user
	Role                 string `json:"role,omitempty"`
	Method               string `json:"amr,omitempty"`
	Addr                 string `json:"addr,omitempty"`
}

// Prover signs proofs as one identity, with a key of its own made at
// start. Proofs are cached until they have half their life left, so that
// a caller making many requests signs about one a half-minute per service
// and user.
type Prover struct {
	identity string
	kid      string
	key      ed25519.PrivateKey

	mu    sync.Mutex
	cache map[proofKey]cachedProof
}

type proofKey struct {
	aud  string
	id   Identity
	addr string
}

type cachedProof struct {
	raw   string
	renew time.Time
}

// NewProver makes a key for identity.
func NewProver(identity string) (*Prover, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &Prover{identity: identity, kid: identity + "." + hex.EncodeToString(id[:]), key: key, cache: map[proofKey]cachedProof{}}, nil
}

// KeyID names the prover's key in KeyBucket.
func (p *Prover) KeyID() string { return p.kid }

// PublicKey is the key's public half, base64url, as KeyBucket holds it.
func (p *Prover) PublicKey() []byte {
	return []byte(base64.RawURLEncoding.EncodeToString(p.key.Public().(ed25519.PublicKey)))
}

// Prove returns a proof for a request to service aud, on behalf of id
// (anonymous for the sender's own requests) from a client at addr.
func (p *Prover) Prove(aud string, id Identity, addr string) (string, error) {
	id.KeyPrefix = "" // the gateway's own business
	k := proofKey{aud: aud, id: id, addr: addr}
	now := time.Now()
	p.mu.Lock()
	c, ok := p.cache[k]
	p.mu.Unlock()
	if ok && now.Before(c.renew) {
		return c.raw, nil
	}
	claims := proofClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: p.identity, Audience: jwt.ClaimStrings{aud}, Subject: id.UserID,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(proofTTL)),
		},
		Role: id.Role, Method: id.Method, Addr: addr,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = p.kid
	raw, err := t.SignedString(p.key)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	if len(p.cache) >= 10_000 {
		clear(p.cache) // proofs are cheap to make again; memory is not free
	}
	p.cache[k] = cachedProof{raw: raw, renew: now.Add(proofTTL / 2)}
	p.mu.Unlock()
	return raw, nil
}

// Proving returns a transport that adds the prover's proof, with no user,
// to each request through next: a service's own calls to another, which
// it addresses by name (http://catalog/…).
func (p *Prover) Proving(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		proof, err := p.Prove(r.URL.Hostname(), Identity{}, "")
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		r.Header.Set(HeaderProof, proof)
		return next.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// KeySet is the public keys proofs are checked with, by key id: a copy of
// KeyBucket that its owner keeps current.
type KeySet struct {
	mu   sync.RWMutex
	keys map[string]ed25519.PublicKey
	// fetch, if set, asks the bucket itself for a key the set does not
	// have yet (a process that started a moment ago), at most ten times a
	// second: unknown key ids are cheap for anyone to send.
	fetch   func(kid string) ([]byte, error)
	fetches *rate.Limiter
}

// NewKeySet returns an empty set that asks fetch, if not nil, for a key
// it does not have.
func NewKeySet(fetch func(kid string) ([]byte, error)) *KeySet {
	return &KeySet{keys: map[string]ed25519.PublicKey{}, fetch: fetch, fetches: rate.NewLimiter(10, 10)}
}

// Put adds or replaces a key from its KeyBucket entry; Delete drops one.
func (s *KeySet) Put(kid string, value []byte) error {
	b, err := base64.RawURLEncoding.DecodeString(string(value))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return fmt.Errorf("key %s: not an Ed25519 public key", kid)
	}
	s.mu.Lock()
	s.keys[kid] = ed25519.PublicKey(b)
	s.mu.Unlock()
	return nil
}

// Delete drops a key.
func (s *KeySet) Delete(kid string) {
	s.mu.Lock()
	delete(s.keys, kid)
	s.mu.Unlock()
}

func (s *KeySet) get(kid string) (ed25519.PublicKey, bool) {
	s.mu.RLock()
	k, ok := s.keys[kid]
	s.mu.RUnlock()
	if ok || s.fetch == nil || !s.fetches.Allow() {
		return k, ok
	}
	v, err := s.fetch(kid)
	if err != nil || s.Put(kid, v) != nil {
		return nil, false
	}
	return s.get(kid)
}

// Verifier checks the proofs of the requests to one service.
type Verifier struct {
	service string
	keys    *KeySet
	parser  *jwt.Parser

	mu    sync.RWMutex
	cache map[string]verified
}

type verified struct {
	caller Caller
	exp    time.Time
}

// NewVerifier returns a verifier of proofs for service, with keys.
func NewVerifier(service string, keys *KeySet) *Verifier {
	return &Verifier{
		service: service, keys: keys, cache: map[string]verified{},
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithAudience(service),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(5*time.Second),
		),
	}
}

// ErrNoProof is a request to a service without valid proof of its sender.
var ErrNoProof = errors.New("no valid proof of the sender")

// Verify returns the caller a request's proof names, or a 401 problem.
func (v *Verifier) Verify(r *http.Request) (Caller, error) {
	raw := r.Header.Get(HeaderProof)
	if raw == "" {
		return Caller{}, problem.Wrap(problem.Unauthorized, ErrNoProof, "this port takes requests from the gateway and the services only")
	}
	now := time.Now()
	v.mu.RLock()
	c, ok := v.cache[raw]
	v.mu.RUnlock()
	if ok && now.Before(c.exp) {
		return c.caller, nil
	}
	var claims proofClaims
	_, err := v.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, err := KeyID(t)
		if err != nil {
			return nil, err
		}
		iss, _ := t.Claims.(*proofClaims).GetIssuer()
		// A key signs for the identity that published it, and no other.
		if owner, _, _ := strings.Cut(kid, "."); owner != iss {
			return nil, fmt.Errorf("key %s does not belong to %q", kid, iss)
		}
		key, ok := v.keys.get(kid)
		if !ok {
			return nil, fmt.Errorf("unknown key %s", kid)
		}
		return key, nil
	})
	if err == nil && claims.Issuer != GatewayIdentity && (claims.Subject != "" || claims.Role != "") {
		err = errors.New("only the gateway's proofs carry a user")
	}
	if err == nil && claims.Subject != "" && ValidRole(claims.Role) != nil {
		err = errors.New("a user without a known role")
	}
	if err != nil {
		return Caller{}, problem.Wrap(problem.Unauthorized, fmt.Errorf("%w: %w", ErrNoProof, err), "the proof of the request's sender is not valid")
	}
	c = verified{exp: claims.ExpiresAt.Time, caller: Caller{
		Sender:   claims.Issuer,
		Identity: Identity{UserID: claims.Subject, Role: claims.Role, Method: claims.Method},
		Addr:     claims.Addr,
	}}
	v.mu.Lock()
	if len(v.cache) >= 10_000 {
		clear(v.cache)
	}
	v.cache[raw] = c
	v.mu.Unlock()
	return c.caller, nil
}
