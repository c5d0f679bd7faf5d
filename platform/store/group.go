package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// maxGroup bounds how many writers share one SQLite commit: the first of a
// group waits for the others' work, so a bigger group delays it longer for
// less and less saved.
const maxGroup = 32

// group commits the work of SQLite's writers together. SQLite takes one
// writer at a time anyway, and a commit's cost (its pages written to the
// WAL, the locks taken and dropped) depends little on how much it commits,
// while the writer's turn is what bounds a busy service (the orders
// service's writer is busy all the time at saturation). So a writer that
// finds others queued behind it leaves its transaction open for them:
// each runs its work in a savepoint of that transaction, in the order they
// queued, and the last of the queue, or the maxGroup-th, commits for all.
//
// A writer's work that fails is rolled back to its savepoint and undoes
// nothing of the others'. No writer returns before the commit of its work,
// and if that commit fails, every writer of the group gets the error, as
// each would from a commit of its own. While a group is open its
// connection is shielded: a statement runs to its end even if its context
// ends meanwhile (database/sql starts no statement on an ended context),
// because SQLite rolls back the whole transaction, the other writers' work
// too, when it interrupts a change.
type group struct {
	writer  *sql.DB
	mu      sync.Mutex   // the writer's turn
	queued  atomic.Int32 // writers waiting for mu
	conn    *sql.Conn    // the group's connection and transaction, if open
	tx      *sql.Tx
	members []chan error // writers whose work tx holds, waiting for its commit
	broken  error        // why tx cannot commit, if it cannot
}

// do runs fn in the group's transaction, beginning one if there is none,
// and returns once fn's work is committed, or has failed.
func (g *group) do(ctx context.Context, fn func(*sql.Tx) error) error {
	g.queued.Add(1)
	g.mu.Lock()
	g.queued.Add(-1)
	err := g.run(ctx, fn)
	var done chan error
	if err == nil {
		done = make(chan error, 1)
		g.members = append(g.members, done)
	}
	if g.tx != nil && (g.queued.Load() == 0 || len(g.members) >= maxGroup || g.broken != nil) {
		g.commit()
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	return <-done
}

// savepoint names each writer's savepoint; a name of its own, so that a
// writer's work may use savepoints too.
const savepoint = "souk_group_member"

// run applies fn in a savepoint of the group's transaction. An error it
// returns is fn's own, and the group goes on without fn's work; but if the
// savepoint cannot be rolled back or released, SQLite has ended the whole
// transaction (as it does on some I/O errors), and the group is broken:
// nothing of it commits.
func (g *group) run(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The group's own statements outlive the context of the writer that
	// runs them: the transaction and the savepoints hold others' work too.
	bg := context.WithoutCancel(ctx)
	if g.tx == nil {
		if err := g.begin(bg); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
	}
	if _, err := g.tx.ExecContext(bg, `SAVEPOINT `+savepoint); err != nil {
		g.broken = err
		return fmt.Errorf("begin: %w", err)
	}
	err := fn(g.tx)
	if err == nil {
		if _, rerr := g.tx.ExecContext(bg, `RELEASE `+savepoint); rerr != nil {
			g.broken = rerr
			return fmt.Errorf("commit: %w", rerr)
		}
		return nil
	}
	if _, rerr := g.tx.ExecContext(bg, `ROLLBACK TO `+savepoint); rerr != nil {
		g.broken = rerr
	} else if _, rerr := g.tx.ExecContext(bg, `RELEASE `+savepoint); rerr != nil {
		g.broken = rerr
	}
	return err
}

// begin takes the writer's connection, shields it and begins the group's
// transaction on it.
func (g *group) begin(ctx context.Context) error {
	conn, err := g.writer.Conn(ctx)
	if err != nil {
		return err
	}
	if err := shield(conn, true); err != nil {
		_ = conn.Close()
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		_ = shield(conn, false)
		_ = conn.Close()
		return err
	}
	g.conn, g.tx = conn, tx
	return nil
}

// shield sets whether conn's statements ignore the end of their contexts.
func shield(conn *sql.Conn, on bool) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*cachingConn)
		if !ok {
			return fmt.Errorf("sqlite: unexpected connection %T", dc)
		}
		c.shielded = on
		return nil
	})
}

// commit ends the group's transaction, hands its connection back and tells
// the members how it went.
func (g *group) commit() {
	err := g.broken
	if err == nil {
		err = g.tx.Commit()
	} else {
		err = errors.Join(err, g.tx.Rollback())
	}
	_ = shield(g.conn, false)
	_ = g.conn.Close()
	if err != nil {
		err = fmt.Errorf("commit: %w", err)
	}
	for _, done := range g.members {
		done <- err
	}
	g.conn, g.tx, g.members, g.broken = nil, nil, nil, nil
}
