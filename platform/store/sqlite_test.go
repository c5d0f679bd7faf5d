package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// cached returns the texts of the statements the writer's connection keeps.
func cached(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	conn, err := db.writer.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := map[string]bool{}
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*cachingConn)
		if !ok {
			return fmt.Errorf("the writer's connection is a %T, not a *cachingConn", dc)
		}
		for q := range c.stmts {
			out[q] = true
		}
		if len(c.stmts) != c.lru.Len() {
			return fmt.Errorf("%d statements in the map, %d in the list", len(c.stmts), c.lru.Len())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func openSQLite(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(context.Background(), `CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	const insert = `INSERT INTO things (id, name) VALUES ($1, $2)`
	for i := range 3 {
		if _, err := db.ExecContext(ctx, insert, i, fmt.Sprint("thing ", i)); err != nil {
			t.Fatal(err)
		}
	}
	if !cached(t, db)[insert] {
		t.Fatalf("the insert is not cached: %v", cached(t, db))
	}

	// A failure leaves the statement reset and usable, and the error is
	// the engine's.
	if _, err := db.ExecContext(ctx, insert, 9, "thing 1"); !IsUniqueViolation(err) {
		t.Fatalf("duplicate name: %v, want a unique violation", err)
	}
	if _, err := db.ExecContext(ctx, insert, 9, "thing 9"); err != nil {
		t.Fatalf("the insert after a failed one: %v", err)
	}

	// The same query twice at once, in one transaction, on one connection:
	// the second runs on a statement of its own while the first's rows are
	// open.
	const names = `SELECT name FROM things WHERE id >= $1 ORDER BY id`
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		outer, err := tx.QueryContext(ctx, names, 0)
		if err != nil {
			return err
		}
		defer outer.Close()
		var got []string
		for outer.Next() {
			var name string
			if err := outer.Scan(&name); err != nil {
				return err
			}
			var inner []string
			rows, err := tx.QueryContext(ctx, names, 2)
			if err != nil {
				return err
			}
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					return err
				}
				inner = append(inner, n)
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if fmt.Sprint(inner) != "[thing 2 thing 9]" {
				return fmt.Errorf("inner query: %v", inner)
			}
			got = append(got, name)
		}
		if fmt.Sprint(got) != "[thing 0 thing 1 thing 2 thing 9]" {
			return fmt.Errorf("outer query: %v", got)
		}
		return outer.Err()
	})
	if err != nil {
		t.Fatal(err)
	}

	// A query whose rows were closed early, and one that found nothing,
	// leave the statement ready for the next use.
	var name string
	for _, id := range []int{9, 100, 0} {
		err := db.writer.QueryRowContext(ctx, `SELECT name FROM things WHERE id = $1`, id).Scan(&name)
		if id == 100 {
			if err != sql.ErrNoRows {
				t.Fatalf("id 100: %v, want no rows", err)
			}
		} else if err != nil || name != fmt.Sprint("thing ", id) {
			t.Fatalf("id %d: %q, %v", id, name, err)
		}
	}

	// A statement interrupted by its context's end is ready for the next
	// use, as a query and as an exec.
	const count = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) SELECT count(*) FROM c`
	for _, exec := range []bool{false, true} {
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if exec {
			_, err = db.writer.ExecContext(cctx, count, 1_000_000_000)
		} else {
			err = db.writer.QueryRowContext(cctx, count, 1_000_000_000).Scan(new(int))
		}
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a count to a billion in 50 ms (exec %v): %v, want the context's deadline", exec, err)
		}
		var n int
		if err := db.writer.QueryRowContext(ctx, count, 10).Scan(&n); err != nil || n != 10 {
			t.Fatalf("the count after an interrupted one: %d, %v", n, err)
		}
	}
	if !cached(t, db)[count] {
		t.Error("the count is not cached")
	}

	// A change of the schema: SQLite prepares a cached statement again.
	if _, err := db.ExecContext(ctx, `ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 7`); err != nil {
		t.Fatal(err)
	}
	var cols []string
	rows, err := db.writer.QueryContext(ctx, `SELECT * FROM things WHERE id = $1`, 9)
	if err == nil {
		cols, err = rows.Columns()
		rows.Close()
	}
	if err != nil || len(cols) != 3 {
		t.Fatalf("after ALTER TABLE: columns %v, %v", cols, err)
	}
}

func TestStatementCacheEvicts(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	// A query whose rows stay open is never evicted.
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const held = `SELECT id FROM things`
	rows, err := conn.QueryContext(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	for i := range stmtCacheSize + 10 {
		q := fmt.Sprintf(`INSERT INTO things (id, name) VALUES ($1, 'thing %d')`, i)
		if _, err := conn.ExecContext(ctx, q, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	got := cached(t, db)
	if len(got) != stmtCacheSize {
		t.Errorf("%d statements cached, want %d", len(got), stmtCacheSize)
	}
	if !got[held] {
		t.Error("the statement whose rows were open was evicted")
	}
	last := fmt.Sprintf(`INSERT INTO things (id, name) VALUES ($1, 'thing %d')`, stmtCacheSize+9)
	if !got[last] {
		t.Error("the last statement is not cached")
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM things`).Scan(&n); err != nil || n != stmtCacheSize+10 {
		t.Errorf("%d rows (%v), want %d", n, err, stmtCacheSize+10)
	}
}
