package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// first runs a writer that holds the writer's turn, inside its transaction,
// until n more writers are queued behind it, so that they join its group.
// It returns, once that writer holds the turn, the writer's result.
func first(t *testing.T, db *DB, n int32, work func(*sql.Tx) error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	holding := make(chan struct{})
	go func() {
		done <- db.InTx(context.Background(), func(tx *sql.Tx) error {
			close(holding)
			deadline := time.Now().Add(10 * time.Second)
			for db.group.queued.Load() < n {
				if time.Now().After(deadline) {
					return fmt.Errorf("%d writers queued after 10 s, want %d", db.group.queued.Load(), n)
				}
				time.Sleep(time.Millisecond)
			}
			return work(tx)
		})
	}()
	select {
	case <-holding:
	case err := <-done:
		t.Fatalf("the first writer did not start: %v", err)
	}
	return done
}

// ids lists the things committed, as a reader sees them.
func ids(t *testing.T, db *DB) []int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT id FROM things ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func insert(id int) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.ExecContext(context.Background(), `INSERT INTO things (id, name) VALUES ($1, $2)`, id, fmt.Sprint("thing ", id))
		return err
	}
}

// queue starts a writer that queues behind the others, and returns its
// result.
func queue(db *DB, ctx context.Context, fn func(*sql.Tx) error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- db.InTx(ctx, fn) }()
	return done
}

func TestGroupCommitsTogether(t *testing.T) {
	db := openSQLite(t)
	failed := errors.New("the handler failed")
	cancelled, cancel := context.WithCancel(context.Background())

	a := first(t, db, 3, func(tx *sql.Tx) error {
		cancel() // the last writer's context ends while it waits
		return insert(1)(tx)
	})
	b := queue(db, context.Background(), func(tx *sql.Tx) error {
		if err := insert(2)(tx); err != nil {
			return err
		}
		return failed
	})
	c := queue(db, context.Background(), insert(3))
	d := queue(db, cancelled, insert(4))

	// The first writer returns after the commit of the whole group: by then
	// the second's failure has undone its own work only, the third's is
	// committed, and the fourth, whose context ended, did nothing.
	if err := <-a; err != nil {
		t.Fatalf("first writer: %v", err)
	}
	if got := ids(t, db); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("after the first writer returned: things %v, want [1 3]", got)
	}
	if err := <-b; !errors.Is(err, failed) {
		t.Errorf("failing writer: %v, want its own error", err)
	}
	if err := <-c; err != nil {
		t.Errorf("third writer: %v", err)
	}
	if err := <-d; !errors.Is(err, context.Canceled) {
		t.Errorf("writer whose context ended: %v, want context.Canceled", err)
	}
	if got := ids(t, db); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("things %v, want [1 3]", got)
	}

	// A plain statement joins a group the same way.
	if _, err := db.ExecContext(context.Background(), `INSERT INTO things (id, name) VALUES (5, 'thing 5')`); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, db); !slices.Equal(got, []int{1, 3, 5}) {
		t.Errorf("things %v, want [1 3 5]", got)
	}
}

// afresh checks that after a failed group, with nothing of it kept, the
// next writer commits on its own.
func afresh(t *testing.T, db *DB) {
	t.Helper()
	if got := ids(t, db); len(got) != 0 {
		t.Errorf("things %v after the failed group, want none", got)
	}
	if err := db.InTx(context.Background(), insert(2)); err != nil {
		t.Fatalf("the next writer: %v", err)
	}
	if got := ids(t, db); !slices.Equal(got, []int{2}) {
		t.Errorf("things %v, want [2]", got)
	}
}

// A commit that fails fails every writer of its group: none of their work
// is kept, and the writers after it start afresh.
func TestGroupCommitFailureReachesEveryWriter(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE parents (id INTEGER PRIMARY KEY);
		CREATE TABLE children (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	a := first(t, db, 1, insert(1))
	// An orphan passes its statement and fails the commit: its foreign key
	// is checked then.
	b := queue(db, ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO children (id, parent) VALUES (1, 42)`)
		return err
	})
	for name, done := range map[string]<-chan error{"first": a, "orphan's": b} {
		if err := <-done; err == nil || !strings.Contains(err.Error(), "FOREIGN KEY constraint failed") {
			t.Errorf("%s writer: %v, want the commit's foreign key failure", name, err)
		}
	}
	afresh(t, db)
}

// A writer that ends the transaction itself (as SQLite does on some I/O
// errors) breaks its group: the work of the writers before it is not kept,
// and no one's after it runs outside a transaction.
func TestGroupBrokenTransaction(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	a := first(t, db, 1, insert(1))
	b := queue(db, ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `ROLLBACK`)
		return err
	})
	if err := <-a; err == nil {
		t.Error("the first writer succeeded, though its transaction was rolled back")
	}
	if err := <-b; err == nil {
		t.Error("the writer that rolled back succeeded")
	}
	afresh(t, db)
}

// A writer whose context ends in the middle of a change does not take the
// group down: SQLite would roll back the whole transaction if it
// interrupted the change, so the change runs to its end, and the writer
// fails at its next statement.
func TestGroupShieldsChanges(t *testing.T) {
	db := openSQLite(t)
	a := first(t, db, 1, insert(1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var changed int64
	b := queue(db, ctx, func(tx *sql.Tx) error {
		time.AfterFunc(5*time.Millisecond, cancel)
		res, err := tx.ExecContext(ctx, `INSERT INTO things (id, name)
			WITH RECURSIVE c(x) AS (SELECT 100 UNION ALL SELECT x + 1 FROM c WHERE x < 300099) SELECT x, 'thing ' || x FROM c`)
		if err != nil {
			return fmt.Errorf("the long change: %w", err)
		}
		changed, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `INSERT INTO things (id, name) VALUES (2, 'thing 2')`)
		return err
	})
	if err := <-a; err != nil {
		t.Fatalf("first writer: %v", err)
	}
	if err := <-b; !errors.Is(err, context.Canceled) {
		t.Fatalf("writer whose context ended: %v, want context.Canceled at its second statement", err)
	}
	if changed != 300_000 {
		t.Errorf("the long change inserted %d rows, want 300000: it should run to its end", changed)
	}
	if got := ids(t, db); !slices.Equal(got, []int{1}) {
		t.Errorf("things %d rows (first %v), want [1]", len(got), got[:min(len(got), 3)])
	}
}

// BenchmarkWriters measures 16 concurrent writers on SQLite, each
// inserting a row and updating a shared counter in a transaction, with a
// commit each ("alone") and sharing commits ("grouped").
func BenchmarkWriters(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		name := "alone"
		if grouped {
			name = "grouped"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, "sqlite:"+b.TempDir()+"/bench.db")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if !grouped {
				db.group = nil
			}
			if _, err := db.ExecContext(ctx, `CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
				CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)`); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(8) // 16 writers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := next.Add(1)
					err := db.InTx(ctx, func(tx *sql.Tx) error {
						if _, err := tx.ExecContext(ctx, `INSERT INTO things (id, name) VALUES ($1, $2)`, id, "a thing"); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + 1`)
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
