package system

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/nats-io/nkeys"

	"github.com/souk-shop/souk/platform/auth"
	"github.com/souk-shop/souk/platform/broker"
	"github.com/souk-shop/souk/platform/discovery"
	"github.com/souk-shop/souk/platform/events"
	"github.com/souk-shop/souk/platform/service"
)

// Souk's identities on NATS: one per service, the gateway, and admin (the
// souk events commands, and operators). Each may do on NATS what it needs
// and nothing else, so that a process that reaches NATS with one service's
// credentials can neither publish another's events, nor register as
// another, nor write an API key (TestNATSPermissions tries).
const (
	// AdminIdentity may do anything: the CLI's dead-letter commands and
	// tests that play a service.
	AdminIdentity = "admin"
)

// Identities lists every identity, services first.
func Identities() []string {
	return append(ServiceNames(), GatewayName, AdminIdentity)
}

// NATSPermissions says what identity may publish and subscribe to, with
// the registry in bucket registry ("" for the default).
func NATSPermissions(identity, registry string) (publish, subscribe []string, err error) {
	if registry == "" {
		registry = discovery.DefaultBucket
	}
	if identity == AdminIdentity {
		return []string{">"}, []string{">"}, nil
	}
	// Every identity: replies to its own requests (JetStream API answers,
	// publish acks, pulled messages, KV watches, which need flow-control
	// answers), and the registry: its own entries, read all.
	publish = []string{"$JS.FC.>", "$JS.API.INFO"}
	subscribe = []string{"_INBOX.>"}
	publish = append(publish, bucket(registry)...)
	publish = append(publish, "$KV."+registry+"."+identity+".>")
	// The keys proofs are checked with: its own keys, read all.
	publish = append(publish, bucket(auth.KeyBucket)...)
	publish = append(publish, "$KV."+auth.KeyBucket+"."+identity+".>")
	if identity == GatewayName {
		// The gateway reads API keys and the revocation list; it may make
		// their buckets (empty), never write an entry.
		publish = append(publish, bucket(auth.APIKeyBucket)...)
		publish = append(publish, bucket(auth.RevocationBucket)...)
		// The console reads the dead letters, one message at a time (a
		// service replays them).
		publish = append(publish,
			"$JS.API.STREAM.INFO."+events.DeadLetterStream, "$JS.API.STREAM.MSG.GET."+events.DeadLetterStream,
		)
		slices.Sort(publish)
		return publish, subscribe, nil
	}
	svc, err := (&Services{}).Get(identity)
	if err != nil {
		return nil, nil, fmt.Errorf("no NATS identity %q", identity)
	}
	parts, err := svc.Build(service.Deps{})
	if err != nil {
		return nil, nil, err
	}
	own := events.StreamName(identity)
	publish = append(publish,
		"souk."+identity+".>", // its own events, and no other's
		"$JS.API.STREAM.CREATE."+own, "$JS.API.STREAM.UPDATE."+own, "$JS.API.STREAM.INFO."+own,
		"$JS.API.STREAM.CREATE."+events.DeadLetterStream, "$JS.API.STREAM.UPDATE."+events.DeadLetterStream,
		"$JS.API.STREAM.INFO."+events.DeadLetterStream,
		// Replaying a dead letter of its own stream for the console: read
		// it, publish it again (its own subject), delete it.
		"$JS.API.STREAM.MSG.GET."+events.DeadLetterStream, "$JS.API.STREAM.MSG.DELETE."+events.DeadLetterStream,
	)
	if len(parts.Retired) > 0 {
		publish = append(publish, "$JS.API.STREAM.PURGE."+own)
	}
	for _, cc := range parts.Consumers {
		producer, err := cc.Producer()
		if err != nil {
			return nil, nil, err
		}
		stream, name := events.StreamName(producer), cc.Name
		publish = append(publish,
			events.DeadLetterSubject(name),
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.CONSUMER.CREATE."+stream+"."+name, "$JS.API.CONSUMER.CREATE."+stream+"."+name+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+stream+"."+name,
			"$JS.API.CONSUMER.INFO."+stream+"."+name,
			"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+name,
			"$JS.ACK."+stream+"."+name+".>",
		)
	}
	if identity == "users" {
		// users alone writes the API keys and the revocation list the
		// gateways read.
		publish = append(publish, bucket(auth.APIKeyBucket)...)
		publish = append(publish, "$KV."+auth.APIKeyBucket+".>")
		publish = append(publish, bucket(auth.RevocationBucket)...)
		publish = append(publish, "$KV."+auth.RevocationBucket+".>")
	}
	slices.Sort(publish)
	return slices.Compact(publish), subscribe, nil
}

// bucket is what reading a KV bucket takes: making it (or finding it as
// it is), and watching it.
func bucket(name string) []string {
	stream := "KV_" + name
	return []string{
		"$JS.API.STREAM.CREATE." + stream, "$JS.API.STREAM.UPDATE." + stream, "$JS.API.STREAM.INFO." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".>", "$JS.API.CONSUMER.DELETE." + stream + ".>",
		"$JS.API.CONSUMER.INFO." + stream + ".>", "$JS.API.DIRECT.GET." + stream + ".>",
	}
}

// NATSCredentials are the nkey seed files of every identity in dir, made
// if missing (mode 0600), and the NATS users they stand for.
func NATSCredentials(dir, registry string) (map[string]broker.Credentials, []broker.User, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	creds := map[string]broker.Credentials{}
	var users []broker.User
	for _, id := range Identities() {
		path := filepath.Join(dir, "nats-"+id+".nk")
		seed, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return nil, nil, err
			}
			if seed, err = kp.Seed(); err != nil {
				return nil, nil, err
			}
			if err := os.WriteFile(path, seed, 0o600); err != nil {
				return nil, nil, err
			}
		} else if err != nil {
			return nil, nil, err
		}
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, nil, fmt.Errorf("nkey seed %s: %w", path, err)
		}
		public, err := kp.PublicKey()
		if err != nil {
			return nil, nil, err
		}
		pub, sub, err := NATSPermissions(id, registry)
		if err != nil {
			return nil, nil, err
		}
		creds[id] = broker.Credentials{NkeySeedFile: path}
		users = append(users, broker.User{Name: id, NkeyPublic: public, Publish: pub, Subscribe: sub})
	}
	return creds, users, nil
}
