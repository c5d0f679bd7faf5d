package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// API keys look like souk_<prefix>_<secret>: the prefix (8 hex digits) finds
// the key, the secret (32 random bytes) proves it. Only the prefix and the
// SHA-256 of the secret are stored: the secret has 256 bits of entropy, so a
// fast hash is as safe as a slow one and costs the gateway nothing.
const apiKeyPrefix = "souk_"

// NewAPIKey returns a new key to give the client once, its prefix, and the
// hash to store.
func NewAPIKey() (key, prefix, hash string) {
	var p [4]byte
	var s [32]byte
	_, _ = rand.Read(p[:])
	_, _ = rand.Read(s[:])
	prefix = hex.EncodeToString(p[:])
	secret := base64.RawURLEncoding.EncodeToString(s[:])
	return apiKeyPrefix + prefix + "_" + secret, prefix, HashAPIKeySecret(secret)
}

// HashAPIKeySecret is the stored form of a key's secret.
func HashAPIKeySecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseAPIKey splits a key into its prefix and secret.
func ParseAPIKey(key string) (prefix, secret string, ok bool) {
	rest, ok := strings.CutPrefix(key, apiKeyPrefix)
	if !ok {
		return "", "", false
	}
	prefix, secret, ok = strings.Cut(rest, "_")
	if !ok || len(prefix) != 8 || len(secret) != 43 {
		return "", "", false
	}
	return prefix, secret, true
}

// APIKeyMatches reports, in constant time, whether secret hashes to hash.
func APIKeyMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(HashAPIKeySecret(secret)), []byte(hash)) == 1
}
