package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/souk-shop/souk/platform/problem"
)

func TestPassword(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(1)
	hash, err := h.Hash(ctx, "correct horse battery")
	if err != nil || !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("Hash = %q, %v", hash, err)
	}
	if again, _ := h.Hash(ctx, "correct horse battery"); again == hash {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, c := range []struct {
		password, hash string
		ok             bool
	}{
		{"correct horse battery", hash, true},
		{"correct horse batterY", hash, false},
		{"", hash, false},
		{"correct horse battery", "", false}, // no password set: never matches
		{"", "", false},                      //
		{"anything", dummyHash, false},       // the timing stand-in matches nothing
		{"correct horse battery", hash[:len(hash)-2] + "AA", false},
	} {
		ok, err := h.Verify(ctx, c.password, c.hash)
		if ok != c.ok || err != nil {
			t.Errorf("Verify(%q, %.30q…) = %v, %v; want %v", c.password, c.hash, ok, err, c.ok)
		}
	}
	if _, err := h.Verify(ctx, "x", "$bcrypt$whatever"); err == nil {
		t.Error("a hash of another scheme verified without an error")
	}

	// The hasher bounds how many run at once: a caller whose context ends
	// while waiting gets an error, not a hash.
	if err := h.acquire(ctx, ""); err != nil { // take the only slot
		t.Fatal(err)
	}
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(waiting, "correct horse battery"); !errors.Is(err, ErrBusy) {
		t.Errorf("Hash with every slot taken and a context that ended: %v, want ErrBusy", err)
	}
	h.release()
	if _, err := h.Hash(ctx, "correct horse battery"); err != nil {
		t.Errorf("Hash after the slot was given back: %v", err)
	}
}

// TestHasherTakesTurns: a storm of hashes queued by some callers delays
// another caller by one hash per busy queue, not by the whole backlog; a
// queue holds MaxWaiting callers and refuses more at once; a caller that
// gives up leaves no trace.
func TestHasherTakesTurns(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(1)
	if err := h.acquire(ctx, "storm-1"); err != nil { // the slot, busy
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(queue string) {
		before := waiters(h)
		wg.Go(func() {
			if err := h.acquire(ctx, queue); err != nil {
				t.Errorf("acquire(%s): %v", queue, err)
				return
			}
			mu.Lock()
			order = append(order, queue)
			mu.Unlock()
			h.release()
		})
		for waiters(h) == before { // in line, in this order
			time.Sleep(time.Millisecond)
		}
	}
	for range MaxWaiting {
		enqueue("storm-1")
	}
	for range MaxWaiting {
		enqueue("storm-2")
	}
	if err := h.acquire(ctx, "storm-1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("acquire beyond MaxWaiting on one queue: %v, want ErrBusy at once", err)
	}
	gaveUp, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- h.acquire(gaveUp, "quitter") }()
	for waiters(h) != 2*MaxWaiting+1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrBusy) {
		t.Fatalf("a caller that gave up: %v", err)
	}
	enqueue("user")
	h.release()
	wg.Wait()
	if i := slices.Index(order, "user"); i < 0 || i > 2 {
		t.Fatalf("the caller from another queue, behind %d queued by two others, came %d in %v; want within the first 3", 2*MaxWaiting, i+1, order)
	}
	if h.free != 1 || len(h.turns) != 0 || len(h.waiting) != 0 {
		t.Fatalf("after everyone: %d free, turns %v, %d queues; want 1, none, none", h.free, h.turns, len(h.waiting))
	}
}

// waiters counts the callers waiting for a slot.
func waiters(h *Hasher) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, q := range h.waiting {
		n += len(q)
	}
	return n
}

func TestAPIKey(t *testing.T) {
	key, prefix, hash := NewAPIKey()
	p, secret, ok := ParseAPIKey(key)
	if !ok || p != prefix || !APIKeyMatches(secret, hash) {
		t.Fatalf("a new key does not parse back: %q → %q %q %v", key, p, secret, ok)
	}
	other, _, _ := NewAPIKey()
	_, otherSecret, _ := ParseAPIKey(other)
	if APIKeyMatches(otherSecret, hash) || APIKeyMatches("", hash) {
		t.Fatal("another key's secret matches")
	}
	for _, bad := range []string{"", "souk_", key[:len(key)-1], "xouk_" + key[5:], strings.Replace(key, "_", "-", 2), key + "x"} {
		if _, _, ok := ParseAPIKey(bad); ok {
			t.Errorf("ParseAPIKey(%q) accepted a malformed key", bad)
		}
	}
}

// TestToken checks that what Sign makes, Parser accepts with the right
// key, and that the parser refuses every other algorithm and a token for
// another issuer, audience or time.
func TestToken(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	key := SigningKey{ID: "k1", Private: priv}
	now := time.Now()
	keyfunc := func(tok *jwt.Token) (any, error) {
		if kid, err := KeyID(tok); err != nil || kid != "k1" {
			return nil, errors.New("unknown key")
		}
		return pub, nil
	}
	parse := func(raw string) (Claims, error) {
		var c Claims
		_, err := Parser().ParseWithClaims(raw, &c, keyfunc)
		return c, err
	}
	good, err := key.Sign("u1", RoleAdmin, "s1", now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse(good)
	if err != nil || c.Subject != "u1" || c.Role != RoleAdmin || c.Session != "s1" || c.ExpiresAt.Sub(now) > TokenTTL+time.Second {
		t.Fatalf("a signed token: %+v, %v", c, err)
	}

	sign := func(method jwt.SigningMethod, k any, claims jwt.Claims, kid string) string {
		tok := jwt.NewWithClaims(method, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	claims := func(iss, aud string, at time.Time) Claims {
		return Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: iss, Subject: "u1", Audience: jwt.ClaimStrings{aud},
			IssuedAt: jwt.NewNumericDate(at), NotBefore: jwt.NewNumericDate(at), ExpiresAt: jwt.NewNumericDate(at.Add(TokenTTL))}, Role: RoleAdmin}
	}
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	for name, raw := range map[string]string{
		"alg none":              sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(Issuer, Audience, now), "k1"),
		"HS256 with the public": sign(jwt.SigningMethodHS256, []byte(pub), claims(Issuer, Audience, now), "k1"),
		"another key":           sign(jwt.SigningMethodEdDSA, otherPriv, claims(Issuer, Audience, now), "k1"),
		"no kid":                sign(jwt.SigningMethodEdDSA, priv, claims(Issuer, Audience, now), ""),
		"another issuer":        sign(jwt.SigningMethodEdDSA, priv, claims("evil", Audience, now), "k1"),
		"another audience":      sign(jwt.SigningMethodEdDSA, priv, claims(Issuer, "other-api", now), "k1"),
		"expired":               sign(jwt.SigningMethodEdDSA, priv, claims(Issuer, Audience, now.Add(-TokenTTL-time.Minute)), "k1"),
		"not yet valid":         sign(jwt.SigningMethodEdDSA, priv, claims(Issuer, Audience, now.Add(5*time.Minute)), "k1"),
		"no expiry": sign(jwt.SigningMethodEdDSA, priv, Claims{RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Subject: "u1", Audience: jwt.ClaimStrings{Audience}}, Role: RoleAdmin}, "k1"),
		"tampered": good[:strings.LastIndexByte(good, '.')-2] + "AA" + good[strings.LastIndexByte(good, '.'):],
	} {
		if _, err := parse(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIdentity(t *testing.T) {
	for _, name := range []string{"X-Souk-User-Id", "x-souk-role", "X-SOUK-ANYTHING"} {
		if !IsIdentityHeader(name) {
			t.Errorf("%s is not an identity header", name)
		}
	}
	if IsIdentityHeader("X-Sou") || IsIdentityHeader("X-Soukk-Role") || IsIdentityHeader("Authorization") {
		t.Error("IsIdentityHeader accepts other headers")
	}
	customer := Identity{UserID: "u1", Role: RoleCustomer}
	admin := Identity{UserID: "a1", Role: RoleAdmin}
	for _, c := range []struct {
		name string
		err  error
		want problem.Code
	}{
		{"anonymous RequireUser", Identity{}.RequireUser(), problem.Unauthorized},
		{"anonymous RequireAdmin", Identity{}.RequireAdmin(), problem.Unauthorized},
		{"customer RequireAdmin", customer.RequireAdmin(), problem.Forbidden},
		{"customer on another user", customer.RequireSelfOrAdmin("u2"), problem.Forbidden},
		{"customer on herself", customer.RequireSelfOrAdmin("u1"), ""},
		{"admin on anyone", admin.RequireSelfOrAdmin("u2"), ""},
		{"admin RequireAdmin", admin.RequireAdmin(), ""},
	} {
		if got := problem.CodeOf(c.err); (c.err == nil) != (c.want == "") || (c.err != nil && got != c.want) {
			t.Errorf("%s: %v, want %q", c.name, c.err, c.want)
		}
	}
}

// TestProof: a service believes a request's sender, and the user it
// carries, from a valid proof only.
func TestProof(t *testing.T) {
	gw, _ := NewProver(GatewayIdentity)
	orders, _ := NewProver("orders")
	keys := NewKeySet(nil)
	keys.Put(gw.KeyID(), gw.PublicKey())
	keys.Put(orders.KeyID(), orders.PublicKey())
	ada := Identity{UserID: "u1", Role: RoleCustomer, Method: "jwt"}
	request := func(proof string) *http.Request {
		r, _ := http.NewRequest("GET", "http://catalog/products", nil)
		if proof != "" {
			r.Header.Set(HeaderProof, proof)
		}
		return r
	}
	prove := func(p *Prover, aud string, id Identity) string {
		raw, err := p.Prove(aud, id, "192.0.2.7")
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	// sign makes a proof with p's key and any claims, as an attacker with
	// that key would.
	sign := func(p *Prover, kid string, c proofClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = kid
		raw, _ := tok.SignedString(p.key)
		return raw
	}
	now := time.Now()
	claims := func(iss, aud, sub, role string, exp time.Time) proofClaims {
		return proofClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: iss, Audience: jwt.ClaimStrings{aud}, Subject: sub,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)}, Role: role}
	}
	good := prove(gw, "catalog", ada)
	v := NewVerifier("catalog", keys)
	c, err := v.Verify(request(good))
	if err != nil || c != (Caller{Sender: GatewayIdentity, Identity: ada, Addr: "192.0.2.7"}) {
		t.Fatalf("a good proof: %+v, %v", c, err)
	}
	if again := prove(gw, "catalog", ada); again != good {
		t.Error("a proof was signed again within its cache life")
	}
	if c, err := v.Verify(request(prove(orders, "catalog", Identity{}))); err != nil || c.Sender != "orders" || !c.Anonymous() {
		t.Fatalf("a service's own proof: %+v, %v", c, err)
	}
	stranger, _ := NewProver(GatewayIdentity) // a key no bucket holds
	for name, proof := range map[string]string{
		"none":                           "",
		"for another service":            prove(gw, "users", ada),
		"an unknown key":                 prove(stranger, "catalog", ada),
		"tampered":                       good[:len(good)-4] + "AAAA",
		"expired":                        sign(gw, gw.KeyID(), claims(GatewayIdentity, "catalog", "u1", RoleCustomer, now.Add(-time.Minute))),
		"orders' key signing as gateway": sign(orders, orders.KeyID(), claims(GatewayIdentity, "catalog", "u1", RoleAdmin, now.Add(time.Minute))),
		"orders' key, gateway's kid":     sign(orders, gw.KeyID(), claims(GatewayIdentity, "catalog", "u1", RoleAdmin, now.Add(time.Minute))),
		"a service's proof with a user":  sign(orders, orders.KeyID(), claims("orders", "catalog", "u1", RoleAdmin, now.Add(time.Minute))),
		"an unknown role":                sign(gw, gw.KeyID(), claims(GatewayIdentity, "catalog", "u1", "root", now.Add(time.Minute))),
		"a user's access token":          mustSign(t),
	} {
		if c, err := v.Verify(request(proof)); err == nil || problem.CodeOf(err) != problem.Unauthorized {
			t.Errorf("%s: %+v, %v; want 401", name, c, err)
		}
	}

	// A key published a moment ago, not yet seen, is asked for.
	fresh, _ := NewProver("payments")
	asked := 0
	fetching := NewKeySet(func(kid string) ([]byte, error) {
		asked++
		if kid != fresh.KeyID() {
			return nil, errors.New("no such key")
		}
		return fresh.PublicKey(), nil
	})
	if _, err := NewVerifier("catalog", fetching).Verify(request(prove(fresh, "catalog", Identity{}))); err != nil || asked != 1 {
		t.Fatalf("a key not seen yet: %v after %d fetches", err, asked)
	}
}

// mustSign is a user's access token, which is no proof.
func mustSign(t *testing.T) string {
	_, priv, _ := ed25519.GenerateKey(nil)
	tok, err := SigningKey{ID: "k1", Private: priv}.Sign("u1", RoleAdmin, "s1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// BenchmarkProof measures what proofs cost: the gateway's, made or taken
// from the cache, and the service's check, made or cached.
func BenchmarkProof(b *testing.B) {
	gw, _ := NewProver(GatewayIdentity)
	keys := NewKeySet(nil)
	keys.Put(gw.KeyID(), gw.PublicKey())
	ada := Identity{UserID: "0190b3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", Role: RoleCustomer, Method: "jwt"}
	b.Run("prove/cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			gw.Prove("catalog", ada, "192.0.2.7")
		}
	})
	b.Run("prove/signed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(gw.cache)
			gw.Prove("catalog", ada, "192.0.2.7")
		}
	})
	raw, _ := gw.Prove("catalog", ada, "192.0.2.7")
	r, _ := http.NewRequest("GET", "http://catalog/products", nil)
	r.Header.Set(HeaderProof, raw)
	v := NewVerifier("catalog", keys)
	b.Run("verify/cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.Verify(r)
		}
	})
	b.Run("verify/checked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(v.cache)
			v.Verify(r)
		}
	})
}
