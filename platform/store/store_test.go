package store_test

import (
	"context"
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
