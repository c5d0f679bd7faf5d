package system

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestLoginStorm is issue 14's goal and issue 16's: 1,200 wrong logins
// for the admin from 60 addresses, each within the gateway's rate limit
// for logins, leave sign-in working for the admin at another address,
// during the storm and after it; and the throttled guesses never reach the
// password hasher (each 401 is one hash).
func TestLoginStorm(t *testing.T) {
	cfg := testGatewayConfig()
	cfg.Defaults.Timeout = gateway.DefaultConfig().Defaults.Timeout
	for i, r := range gateway.DefaultConfig().Routes {
		if r.Path == "/api/auth/login" {
			cfg.Routes[i].RateLimit = r.RateLimit // {address: {rps: 2, burst: 20}}
		}
	}
	sys := startSystem(t, t.TempDir(), io.Discard, &cfg)
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	gw := sys.URLs[gateway.Name]
	url := gw + "/api/auth/login"
	wrong := fmt.Sprintf(`{"email":%q,"password":"not the password"}`, adminEmail)
	right := fmt.Sprintf(`{"email":%q,"password":%q}`, adminEmail, adminPassword)

	const addresses, each = 60, 20
	var mu sync.Mutex
	statuses := map[int]int{}
	sent := make(chan struct{}, addresses*each)
	var wg sync.WaitGroup
	start := time.Now()
	for a := range addresses {
		client := clientFrom(t, fmt.Sprintf("127.0.0.%d", 10+a))
		wg.Go(func() {
			for range each {
				status, err := send(t, client, url, wrong)
				sent <- struct{}{}
				mu.Lock()
				if err != nil {
					statuses[-1]++
				} else {
					statuses[status]++
				}
				mu.Unlock()
			}
		})
	}
	signIn := func(when, ip string) {
		t.Helper()
		began := time.Now()
		status, err := send(t, clientFrom(t, ip), url, right)
		if err != nil || status != 200 {
			t.Errorf("the admin signing in from %s %s: %d, %v; want 200", ip, when, status, err)
			return
		}
		t.Logf("the admin signed in from %s %s in %s", ip, when, time.Since(began).Round(time.Millisecond))
	}
	answered := 0
	for _, at := range []struct {
		answers int
		when    string
	}{{addresses, "in the storm's first wave"}, {addresses * each / 2, "halfway through the storm"}} {
		for ; answered < at.answers; answered++ {
			<-sent
		}
		signIn(at.when, fmt.Sprintf("127.0.0.%d", 200+answered%50))
	}
	wg.Wait()
	t.Logf("1200 wrong logins from 60 addresses in %s: %v (status: count; -1: no answer)", time.Since(start).Round(time.Millisecond), statuses)
	signIn("after the storm", "127.0.0.250")

	// 401: the password was checked; 429: throttled before any hashing;
	// 503 and 504: the guess waited its turn at the hasher longer than the
	// request's deadline (a guess the brake lets through is hashed like
	// any other try, and the first wave of 60 takes a while on 2 cores).
	if n := statuses[401] + statuses[429] + statuses[503] + statuses[504]; n != addresses*each {
		t.Errorf("answers %v; want only 401, 429 and time-outs", statuses)
	}
	// One try per address gets through the brake, and the few before it.
	if hashed := statuses[401] + statuses[503] + statuses[504]; hashed > addresses+20 {
		t.Errorf("%d wrong passwords went to the hasher, want about one per address: the throttle let guesses through", hashed)
	}
}

// send posts body to url from client and checks the exchange against the
// API's description; it may run on any goroutine.
func send(t *testing.T, client *http.Client, url, body string) (int, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	checkAPI(t, req, []byte(body), resp, b)
	return resp.StatusCode, nil
}
