package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/problem"
)

// Authenticator turns a request's credentials into an identity: an access
// token (JWT), verified locally against the users service's JWK Set and
// checked against the revocation list, or an API key, checked against the
// keys the users service projects into NATS KV.
type Authenticator struct {
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
	tokens  tokenCache
	keys    apiKeys
	revoked *auth.Revocations
	fails   *prometheus.CounterVec
}

// NewAuthenticator verifies tokens with the keys served at jwksURL (see
// jwks) and refuses those the revocation list in revocations names; it
// checks API keys with the entries in keys. It runs until ctx ends.
func NewAuthenticator(ctx context.Context, jwksURL string, client *http.Client, keys, revocations jetstream.KeyValue, reg prometheus.Registerer, log *slog.Logger) (*Authenticator, error) {
	kf, err := jwks(ctx, jwksURL, client, log)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		keyfunc: kf,
		parser:  auth.Parser(),
		tokens:  tokenCache{entries: map[string]cachedToken{}},
		fails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "souk_gateway_auth_failures_total", Help: "Requests refused for their credentials, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(a.fails)
	if err := a.keys.watch(ctx, keys); err != nil {
		return nil, err
	}
	if a.revoked, err = auth.WatchRevocations(ctx, revocations, log); err != nil {
		return nil, err
	}
	return a, nil
}

// authError is a refusal with a reason for the metrics.
// jwks returns the keys of the JWK Set at jwksURL, fetched with client,
// refreshed every minute and at once on an unknown key id: at most every
// 2 s, and a request waits for the limiter and the refresh together at
// most refreshWait. A token with a forged key id therefore fails at once,
// but for one each 2 s; a token from a key the users service has just made
// waits for the refresh that finds it. The wait bounds the refresh itself
// too (the library gives both one deadline): 10 ms, as it once was, made a
// refresh through the registry on a busy machine fail, and the token 401.
func jwks(ctx context.Context, jwksURL string, client *http.Client, log *slog.Logger) (jwt.Keyfunc, error) {
	noErr := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{jwksURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               5 * time.Second,
		NoErrorReturnFirstHTTPReq: &noErr, // the users service may start after the gateway
		RefreshInterval:           time.Minute,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(2*time.Second), 1),
		RateLimitWaitMax:          refreshWait,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				if ctx.Err() == nil {
					log.Warn("refreshing the JWK Set failed", "url", jwksURL, "err", err)
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return kf.Keyfunc, nil
}

// refreshWait bounds what a request with an unknown key id waits for: the
// limiter's next turn and the refresh.
const refreshWait = time.Second

func (a *Authenticator) authError(reason, detail string) error {
	a.fails.WithLabelValues(reason).Inc()
	code := "invalid_token"
	if reason == "malformed" {
		code = "invalid_request"
	}
	return &credentialError{oauthCode: code, err: problem.New(problem.Unauthorized, "%s", detail)}
}

// credentialError is a credential that was sent and is wrong, with its
// RFC 6750 error code for the WWW-Authenticate challenge.
type credentialError struct {
	oauthCode string // invalid_request or invalid_token
	err       *problem.Error
}

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// challenge sets the WWW-Authenticate header of a refusal (RFC 6750, 3):
// on a 401, the Bearer scheme, with an error code only when a credential
// was sent and is wrong; on a 403 for want of a role, insufficient_scope.
func challenge(h http.Header, err error) {
	const scheme = `Bearer realm="souk"`
	if ce, ok := errors.AsType[*credentialError](err); ok {
		h.Set("WWW-Authenticate", scheme+`, error="`+ce.oauthCode+`", error_description="`+quotable(ce.err.Detail)+`"`)
		return
	}
	switch problem.CodeOf(err) {
	case problem.Unauthorized:
		h.Set("WWW-Authenticate", scheme)
	case problem.Forbidden:
		h.Set("WWW-Authenticate", scheme+`, error="insufficient_scope"`)
	}
}

// quotable keeps what RFC 6750 allows in error_description: printable
// ASCII but the quote and the backslash.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// Authenticate returns the identity the request's credentials prove, or
// the anonymous identity if it has none. Credentials that are present but
// wrong are an error, even on a public route.
func (a *Authenticator) Authenticate(r *http.Request) (auth.Identity, error) {
	cred := r.Header.Get("X-API-Key")
	if cred == "" {
		h := r.Header.Get("Authorization")
		if h == "" {
			return auth.Identity{}, nil
		}
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
			return auth.Identity{}, a.authError("malformed", "Authorization must be: Bearer <token or API key>")
		}
		cred = strings.TrimSpace(rest)
	}
	if strings.HasPrefix(cred, "souk_") {
		return a.apiKey(cred)
	}
	return a.token(cred)
}

func (a *Authenticator) apiKey(key string) (auth.Identity, error) {
	prefix, secret, ok := auth.ParseAPIKey(key)
	if !ok {
		return auth.Identity{}, a.authError("malformed", "malformed API key")
	}
	e, ok := a.keys.get(prefix)
	if !ok || !auth.APIKeyMatches(secret, e.SecretHash) {
		return auth.Identity{}, a.authError("unknown_key", "unknown API key")
	}
	if e.Revoked {
		return auth.Identity{}, a.authError("revoked_key", "this API key was revoked")
	}
	return auth.Identity{UserID: e.UserID, Role: e.Role, Method: "api-key", KeyPrefix: prefix}, nil
}

func (a *Authenticator) token(raw string) (auth.Identity, error) {
	now := time.Now()
	if t, ok := a.tokens.get(raw, now); ok {
		if a.revoked.Revoked(t.id.UserID, t.session, now) {
			return auth.Identity{}, a.authError("revoked", "this token's session has ended; log in again")
		}
		return t.id, nil
	}
	var claims auth.Claims
	_, err := a.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		if _, err := auth.KeyID(t); err != nil {
			return nil, err
		}
		return a.keyfunc(t)
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return auth.Identity{}, a.authError("expired", "the token has expired; log in again")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return auth.Identity{}, a.authError("not_yet_valid", "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return auth.Identity{}, a.authError("wrong_issuer_or_audience", "the token is not for this API")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return auth.Identity{}, a.authError("bad_signature", "the token's signature is invalid")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return auth.Identity{}, a.authError("unverifiable", "the token's key or algorithm is not accepted")
	default:
		return auth.Identity{}, a.authError("invalid", "the token is invalid")
	}
	if claims.Subject == "" || auth.ValidRole(claims.Role) != nil {
		return auth.Identity{}, a.authError("invalid", "the token has no subject or an unknown role")
	}
	if a.revoked.Revoked(claims.Subject, claims.Session, now) {
		return auth.Identity{}, a.authError("revoked", "this token's session has ended; log in again")
	}
	id := auth.Identity{UserID: claims.Subject, Role: claims.Role, Method: "jwt"}
	a.tokens.put(raw, cachedToken{id: id, session: claims.Session, exp: claims.ExpiresAt.Time})
	return id, nil
}

// tokenCache remembers verified tokens until they expire, so that a client
// reusing its token costs a map lookup instead of a signature check (and
// the revocation list's check, which every use of a token passes).
type tokenCache struct {
	mu      sync.RWMutex
	entries map[string]cachedToken
}

type cachedToken struct {
	id      auth.Identity
	session string
	exp     time.Time
}

const tokenCacheSize = 10_000

func (c *tokenCache) get(raw string, now time.Time) (cachedToken, bool) {
	c.mu.RLock()
	e, ok := c.entries[raw]
	c.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		return cachedToken{}, false // expired entries fail here and are parsed, and refused, again
	}
	return e, true
}

func (c *tokenCache) put(raw string, t cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= tokenCacheSize {
		now := time.Now()
		for k, e := range c.entries { // drop the expired, or else any one
			if !now.Before(e.exp) || len(c.entries) >= tokenCacheSize {
				delete(c.entries, k)
			}
		}
	}
	c.entries[raw] = t
}

// apiKeys mirrors the API key bucket.
type apiKeys struct {
	mu      sync.RWMutex
	entries map[string]auth.APIKeyEntry
}

func (k *apiKeys) get(prefix string) (auth.APIKeyEntry, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e, ok := k.entries[prefix]
	return e, ok
}

// watch loads the bucket and follows it until ctx ends.
func (k *apiKeys) watch(ctx context.Context, kv jetstream.KeyValue) error {
	k.entries = map[string]auth.APIKeyEntry{}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch api keys: %w", err)
	}
	synced := make(chan struct{})
	go func() {
		defer func() { _ = w.Stop() }()
		for e := range w.Updates() {
			if e == nil {
				close(synced)
				continue
			}
			var entry auth.APIKeyEntry
			k.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &entry) == nil {
				k.entries[e.Key()] = entry
			} else {
				delete(k.entries, e.Key())
			}
			k.mu.Unlock()
		}
	}()
	select {
	case <-synced:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("watch api keys: the initial entries did not arrive in 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
}
