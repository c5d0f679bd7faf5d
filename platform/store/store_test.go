package store_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"testing"
	"testing/fstest"

	"github.com/souk-shop/souk/internal/testenv"
	"github.com/souk-shop/souk/platform/store"
)

var migrations = fstest.MapFS{
	"00001_things.sql": {Data: []byte(`-- +goose Up
CREATE TABLE parents (id TEXT PRIMARY KEY);
CREATE TABLE things (id TEXT PRIMARY KEY, parent TEXT NOT NULL REFERENCES parents (id), name TEXT NOT NULL UNIQUE);
-- +goose Down
DROP TABLE things;
DROP TABLE parents;
`)},
}

func TestOpenAndMigrate(t *testing.T) {
	ctx := context.Background()
	for _, engine := range testenv.Databases() {
		t.Run(engine.Name, func(t *testing.T) {
			url := engine.URL(t)
			db, err := store.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for range 2 {
				if err := db.Migrate(ctx, "test", migrations, testenv.Logger(t)); err != nil {
					t.Fatalf("Migrate: %v", err)
				}
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO parents (id) VALUES ($1)`, "p"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO things (id, parent, name) VALUES ($1, $2, $3)`, "a", "p", "x"); err != nil {
				t.Fatal(err)
			}
			_, err = db.ExecContext(ctx, `INSERT INTO things (id, parent, name) VALUES ($1, $2, $3)`, "b", "p", "x")
			if !store.IsUniqueViolation(err) {
				t.Errorf("duplicate name: IsUniqueViolation(%v) = false", err)
			}
			_, err = db.ExecContext(ctx, `INSERT INTO things (id, parent, name) VALUES ($1, $2, $3)`, "a", "p", "y")
			if !store.IsUniqueViolation(err) {
				t.Errorf("duplicate primary key: IsUniqueViolation(%v) = false", err)
			}
			_, err = db.ExecContext(ctx, `INSERT INTO things (id, parent, name) VALUES ($1, $2, $3)`, "c", "nobody", "z")
			if err == nil {
				t.Error("a row referencing a missing parent was accepted: foreign keys are off")
			} else if store.IsUniqueViolation(err) {
				t.Errorf("a foreign key failure counted as a unique violation: %v", err)
			}
		})
	}
}

func TestSQLitePragmas(t *testing.T) {
	db, err := store.Open(context.Background(), testenv.SQLiteURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000", "synchronous": "1"}
	for pragma, v := range want {
		var got string
		if err := db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != v {
			t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, v)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, url := range []string{"", "sqlite:", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"} {
		if db, err := store.Open(context.Background(), url); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", url)
		}
	}
}

// TestPlainOnLoopback connects to a PostgreSQL on loopback, its URL saying
// nothing of TLS, and checks that the connection does without TLS; and
// that a URL asking for TLS still gets it.
func TestPlainOnLoopback(t *testing.T) {
	raw := testenv.PostgresURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h != "localhost" && !net.ParseIP(h).IsLoopback() || u.Query().Has("sslmode") || os.Getenv("PGSSLMODE") != "" {
		t.Skipf("%s is not a loopback URL that leaves TLS to the driver", testenv.PostgresEnv)
	}
	ctx := context.Background()
	usesTLS := func(raw string) (bool, error) {
		db, err := store.Open(ctx, raw)
		if err != nil {
			return false, err
		}
		defer db.Close()
		var ssl bool
		err = db.QueryRowContext(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl)
		return ssl, err
	}
	if ssl, err := usesTLS(raw); err != nil || ssl {
		t.Fatalf("a loopback connection without sslmode: TLS %v (%v), want none", ssl, err)
	}
	q := u.Query()
	q.Set("sslmode", "require")
	u.RawQuery = q.Encode()
	ssl, err := usesTLS(u.String())
	if err != nil {
		t.Skipf("the server does not take TLS: %v", err)
	}
	if !ssl {
		t.Fatal("sslmode=require connected without TLS")
	}
}

func TestValues(t *testing.T) {
	for _, c := range []struct {
		rows, cols int
		want       string
	}{
		{1, 1, "($1)"},
		{1, 3, "($1, $2, $3)"},
		{3, 2, "($1, $2), ($3, $4), ($5, $6)"},
	} {
		if got := store.Values(c.rows, c.cols); got != c.want {
			t.Errorf("Values(%d, %d) = %q, want %q", c.rows, c.cols, got, c.want)
		}
	}
	if got, want := store.ValuesFrom(4, 2, 2), "($4, $5), ($6, $7)"; got != want {
		t.Errorf("ValuesFrom(4, 2, 2) = %q, want %q", got, want)
	}
}
