package store

import "testing"

func TestPlainOnLoopbackURLs(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "PGSSLMODE" {
				return v
			}
			return ""
		}
	}
	for _, c := range []struct {
		in, pgsslmode, want string
	}{
		{"postgres://u@127.0.0.1:5432/db", "", "postgres://u@127.0.0.1:5432/db?sslmode=allow"},
		{"postgresql://u@localhost/db?search_path=s", "", "postgresql://u@localhost/db?search_path=s&sslmode=allow"},
		{"postgres://u@[::1]:5432/db", "", "postgres://u@[::1]:5432/db?sslmode=allow"},
		{"postgres://u@127.0.0.1:5432,127.0.0.2:5433/db", "", "postgres://u@127.0.0.1:5432,127.0.0.2:5433/db?sslmode=allow"},
		// Said otherwise, or not only loopback: as given.
		{"postgres://u@127.0.0.1/db?sslmode=require", "", "postgres://u@127.0.0.1/db?sslmode=require"},
		{"postgres://u@127.0.0.1/db?sslrootcert=ca.pem", "", "postgres://u@127.0.0.1/db?sslrootcert=ca.pem"},
		{"postgres://u@127.0.0.1/db", "verify-full", "postgres://u@127.0.0.1/db"},
		{"postgres://u@db.example.com/db", "", "postgres://u@db.example.com/db"},
		{"postgres://u@127.0.0.1,10.0.0.5/db", "", "postgres://u@127.0.0.1,10.0.0.5/db"},
		{"postgres://u@/db?host=/var/run/postgresql", "", "postgres://u@/db?host=/var/run/postgresql"},
		{"postgres://u@127.0.0.1/db?host=10.0.0.5", "", "postgres://u@127.0.0.1/db?host=10.0.0.5"},
		{"host=127.0.0.1 dbname=db", "", "host=127.0.0.1 dbname=db"},
	} {
		if got := plainOnLoopback(c.in, env(c.pgsslmode)); got != c.want {
			t.Errorf("plainOnLoopback(%q) with PGSSLMODE=%q = %q, want %q", c.in, c.pgsslmode, got, c.want)
		}
	}
}
