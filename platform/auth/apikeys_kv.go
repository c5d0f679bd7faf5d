package auth

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// APIKeyBucket is the NATS KV bucket through which gateways learn API keys:
// the users service keeps one entry per key, under the key's prefix.
const APIKeyBucket = "souk_api_keys"

// APIKeyEntry is what a gateway needs to check an API key. A revoked key
// keeps its entry, with Revoked set, so that it can never come back.
type APIKeyEntry struct {
	Prefix     string `json:"prefix"`
	SecretHash string `json:"secret_hash,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	Role       string `json:"role,omitempty"`
	Revoked    bool   `json:"revoked,omitempty"`
}

// OpenAPIKeys creates or opens the API key bucket (file storage: it must
// survive a NATS restart, unlike the registry).
func OpenAPIKeys(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      APIKeyBucket,
		Description: "API keys by prefix, projected from the users service's events",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("api key bucket: %w", err)
	}
	return kv, nil
}
