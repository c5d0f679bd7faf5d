package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token settings shared by the signer (users) and the verifier (gateway).
const (
	Issuer   = "souk"
	Audience = "souk-api"
	// TokenTTL is how long an access token is valid: short, since a
	// token cannot be taken back before it expires but through the
	// revocation list (revocations.go); a refresh token gets the next.
	TokenTTL = 5 * time.Minute
)

// Claims are an access token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Role string `json:"role"`
	// Session is the id of the session the token belongs to (a UUIDv7,
	// ordered by when the session began), by which it can be revoked.
	Session string `json:"sid,omitempty"`
}

// SigningKey is an Ed25519 key with its id.
type SigningKey struct {
	ID      string
	Private ed25519.PrivateKey
}

// Sign returns an access token for user with role in session, valid from
// now for TokenTTL, signed with k and naming k.ID in its header.
func (k SigningKey) Sign(user, role, session string, now time.Time) (string, error) {
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   user,
			Audience:  jwt.ClaimStrings{Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(TokenTTL)),
		},
		Role:    role,
		Session: session,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = k.ID
	return t.SignedString(k.Private)
}

// JWK is one public key in a JWK Set (RFC 7517, OKP keys per RFC 8037).
type JWK struct {
	KeyType string `json:"kty"`
	Curve   string `json:"crv"`
	X       string `json:"x"`
	KeyID   string `json:"kid"`
	Alg     string `json:"alg"`
	Use     string `json:"use"`
}

// JWKS is a JWK Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK returns the JWK of an Ed25519 public key.
func PublicJWK(kid string, pub ed25519.PublicKey) JWK {
	return JWK{KeyType: "OKP", Curve: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), KeyID: kid, Alg: "EdDSA", Use: "sig"}
}

// Parser returns the token parser the gateway uses: EdDSA only (never none
// or HS*), issuer and audience checked, expiry required, 30 s of leeway
// for clocks that differ.
func Parser() *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second),
	)
}

// ErrNoKeyID means a token's header names no key.
var ErrNoKeyID = errors.New("token has no kid")

// KeyID returns the kid of a parsed token's header.
func KeyID(t *jwt.Token) (string, error) {
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return "", ErrNoKeyID
	}
	return kid, nil
}

// ValidRole reports whether role is one Souk knows.
func ValidRole(role string) error {
	if role != RoleCustomer && role != RoleAdmin {
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}
