package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/souk-shop/souk/platform/secrets"
)

// TestSecretsRotate rotates souk up's keyring between runs: a card kept
// before pays after each rotation, and retiring the old keys leaves a
// keyring of one key that still opens every card.
func TestSecretsRotate(t *testing.T) {
	dir := t.TempDir()
	const password = "rotate admin password"
	var customer, method, lamp string
	// shop places an order paid with the card kept at the first run, and
	// waits for it to be confirmed.
	shop := func(urls map[string]string) {
		gw := urls["gateway"]
		json1 := func(code int, _ any, b []byte) map[string]any {
			t.Helper()
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%d %s", code, b)
			}
			return m
		}
		if customer == "" {
			send(t, "POST", gw+"/api/auth/register", `{"name":"Ro","email":"ro@example.com","password":"correct horse battery"}`)
			code, h, b := send(t, "POST", gw+"/api/auth/login", `{"email":"ro@example.com","password":"correct horse battery"}`)
			customer = json1(code, h, b)["access_token"].(string)
			code, h, b = send(t, "POST", gw+"/api/payment-methods", `{"card":"4242424242424242"}`, "Authorization", "Bearer "+customer)
			method = json1(code, h, b)["token"].(string)
			code, h, b = send(t, "POST", gw+"/api/auth/login", fmt.Sprintf(`{"email":"admin@souk.local","password":%q}`, password))
			admin := json1(code, h, b)["access_token"].(string)
			code, h, b = send(t, "POST", gw+"/api/products", `{"name":"Lamp","price":{"amount":100,"currency":"EUR"}}`, "Authorization", "Bearer "+admin)
			lamp = json1(code, h, b)["id"].(string)
			send(t, "PUT", gw+"/api/inventory/"+lamp, `{"available":10}`, "Authorization", "Bearer "+admin)
		} else {
			code, h, b := send(t, "POST", gw+"/api/auth/login", `{"email":"ro@example.com","password":"correct horse battery"}`)
			customer = json1(code, h, b)["access_token"].(string)
		}
		code, h, b := send(t, "POST", gw+"/api/orders", fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}],"payment_method":%q}`, lamp, method),
			"Authorization", "Bearer "+customer, "Idempotency-Key", fmt.Sprint(time.Now().UnixNano()))
		id := json1(code, h, b)["id"].(string)
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, h, b := send(t, "GET", gw+"/api/orders/"+id, "", "Authorization", "Bearer "+customer)
			o := json1(code, h, b)
			if o["status"] == "confirmed" {
				return
			}
			if o["status"] == "cancelled" || time.Now().After(deadline) {
				t.Fatalf("order paid with the kept card: %v %v", o["status"], o["reason"])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rotate := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		if code := run(context.Background(), append([]string{"secrets", "rotate", "--data", dir}, args...), noEnv, &out, &out); code != 0 {
			t.Fatalf("souk secrets rotate %v: exit %d:\n%s", args, code, out.String())
		}
		return out.String()
	}
	keys := func() []string {
		t.Helper()
		k, err := secrets.Load(filepath.Join(dir, "keyring"))
		if err != nil {
			t.Fatal(err)
		}
		return k.IDs()
	}

	up(t, dir, shop, "--admin-password", password)
	first := keys()
	if len(first) != 1 {
		t.Fatalf("souk up's keyring has %d keys, want 1", len(first))
	}
	if fi, err := os.Stat(filepath.Join(dir, "keyring")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring: %v %v, want mode 0600", fi, err)
	}

	out := rotate()
	if !strings.Contains(out, "payments: payment_methods.card: 1 re-wrapped") || !strings.Contains(out, "users: signing_keys.private_key: 1 re-wrapped") {
		t.Errorf("rotate said:\n%s", out)
	}
	second := keys()
	if len(second) != 2 || second[1] != first[0] {
		t.Fatalf("after rotate the keyring is %v, want a new primary before %v", second, first)
	}
	up(t, dir, shop)

	out = rotate("--retire")
	if !strings.Contains(out, "retired: "+second[0]+", "+first[0]) && !strings.Contains(out, "retired: "+first[0]+", "+second[0]) {
		t.Errorf("rotate --retire said:\n%s", out)
	}
	if third := keys(); len(third) != 1 || third[0] == first[0] || third[0] == second[0] {
		t.Fatalf("after rotate --retire the keyring is %v, want one new key", third)
	}
	up(t, dir, shop)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"secrets", "rotate", "--data", t.TempDir()}, "no keyring"},
		{[]string{"secrets", "rotate", "--data", dir, "--db", "catalog=" + filepath.Join(dir, "catalog.db")}, "seals nothing"},
	} {
		var out strings.Builder
		if code := run(context.Background(), c.args, noEnv, &out, &out); code != 1 || !strings.Contains(out.String(), c.want) {
			t.Errorf("souk %v: exit %d, %q; want exit 1 saying %q", c.args, code, out.String(), c.want)
		}
	}
}
