package system

import (
	"context"
	"fmt"
	"io"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/souk-shop/souk/services/gateway"
)

// TestOneIdentityPerPerson tries, through the gateway, to sign up as
// someone else with an address that looks like theirs, and to hide text
// in names and products: each is a 400 naming the field. Two spellings of
// one address are one account.
func TestOneIdentityPerPerson(t *testing.T) {
	sys := startSystem(t, t.TempDir(), io.Discard, nil)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	admin := bearer(login(t, gw, adminEmail, adminPassword))
	signUp := func(name, email string) response {
		return call(t, "POST", gw+"/api/auth/register", fmt.Sprintf(`{"name":%q,"email":%q,"password":"correct horse battery"}`, name, email))
	}

	for _, c := range []struct {
		what, method, path, body string
		headers                  []string
		field                    string
	}{
		{"the admin's address with a Cyrillic а", "POST", "/api/auth/register",
			`{"name":"Admin","email":"\u0430dmin@example.com","password":"correct horse battery"}`, nil, "email"},
		{"the admin's domain with a Greek ο", "POST", "/api/auth/register",
			`{"name":"Admin","email":"admin@exampl\u03bf.com","password":"correct horse battery"}`, nil, "email"},
		{"a zero-width space in the address", "POST", "/api/auth/register",
			`{"name":"Admin","email":"ad\u200bmin@example.com","password":"correct horse battery"}`, nil, "email"},
		{"a right-to-left override in a name", "POST", "/api/auth/register",
			`{"name":"Eve\u202enimda","email":"eve@example.com","password":"correct horse battery"}`, nil, "name"},
		{"a control character in a name", "PATCH", "/api/users/{admin}",
			`{"name":"Admin\u001b[2J"}`, admin, "name"},
		{"a control character in a product's description", "POST", "/api/products",
			`{"name":"Lamp","description":"warm\u0000light","price":{"amount":100,"currency":"EUR"}}`, admin, "description"},
		{"bidi isolates in a product's name", "POST", "/api/products",
			`{"name":"Lamp\u2066x\u2069","price":{"amount":100,"currency":"EUR"}}`, admin, "name"},
		{"a lookalike address at login", "POST", "/api/auth/login",
			`{"email":"\u0430dmin@example.com","password":"admin password 123"}`, nil, "email"},
	} {
		path := c.path
		if path == "/api/users/{admin}" {
			path = "/api/users/" + userID(t, gw, admin)
		}
		r := call(t, c.method, gw+path, c.body, c.headers...)
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400", c.what, r.status, r.body)
			continue
		}
		if p := r.problem(t); len(p.Errors) != 1 || p.Errors[0].Field != c.field {
			t.Errorf("%s: errors %+v, want one on %s", c.what, p.Errors, c.field)
		}
	}

	nfc, nfd := norm.NFC.String("Zoë@Example.com"), norm.NFD.String("zoë@example.COM")
	r := signUp("Zoë", nfc)
	if r.status != 201 {
		t.Fatalf("sign up as %q: %d %s", nfc, r.status, r.body)
	}
	if got := r.json(t)["email"]; got != norm.NFC.String("zoë@example.com") {
		t.Errorf("the address is stored as %q, want its canonical form", got)
	}
	if r := signUp("Zoë's twin", nfd); r.status != 409 {
		t.Errorf("sign up again with the NFD spelling %q: %d %s, want 409", nfd, r.status, r.body)
	}
	login(t, gw, nfd, "correct horse battery") // the other spelling signs in to the one account
}

// userID returns the id of the user a token or key belongs to.
func userID(t *testing.T, gw string, headers []string) string {
	t.Helper()
	r := call(t, "GET", gw+"/api/users?limit=1", "", headers...)
	if r.status != 200 {
		t.Fatalf("list users: %d %s", r.status, r.body)
	}
	items, _ := r.json(t)["items"].([]any)
	if len(items) == 0 {
		t.Fatal("no users")
	}
	return items[0].(map[string]any)["id"].(string)
}
