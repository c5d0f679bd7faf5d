package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"fmt"

	"modernc.org/sqlite"
)

// stmtCacheSize is how many prepared statements a SQLite connection keeps.
// A service runs a few dozen statements over and over; the rest are the
// multi-row inserts whose text varies with the number of rows.
const stmtCacheSize = 128

// sqliteConnector opens SQLite connections that keep their prepared
// statements. database/sql asks a driver to prepare a statement for every
// ExecContext and QueryContext and drops it after: with modernc's SQLite,
// parsing and planning the same text again was a sixth of what the orders
// service spent on an order.
type sqliteConnector struct {
	dsn    string
	driver *sqlite.Driver
}

func (c sqliteConnector) Driver() driver.Driver { return c.driver }

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.driver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("sqlite: the driver's connection (%T) lacks a method database/sql uses", conn)
	}
	return &cachingConn{sqliteConn: sc, stmts: map[string]*list.Element{}, lru: list.New()}, nil
}

// sqliteConn is what modernc's connection implements and database/sql
// uses; cachingConn passes all of it through, but for the statements.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// cachedStmt is a prepared statement of a connection's cache. It is busy
// while the rows of a query on it are open: a second use of the same text
// then prepares a statement of its own.
type cachedStmt struct {
	query string
	stmt  sqliteStmt
	busy  bool
}

// cachingConn keeps the last stmtCacheSize statements it ran, prepared.
// database/sql uses a connection from one goroutine at a time, so the cache
// needs no lock.
type cachingConn struct {
	sqliteConn
	stmts map[string]*list.Element // of *cachedStmt, in lru
	lru   *list.List               // most recently used first
	// shielded, while a group of writers holds the connection, makes its
	// statements run to their end whatever becomes of their contexts.
	shielded bool
}

// stmt returns the connection's statement for query, prepared now if it is
// not cached yet, or nil if query is to run uncached: its statement is
// busy, or every cached one is and none can make room.
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if e, ok := c.stmts[query]; ok {
		s := e.Value.(*cachedStmt)
		if s.busy {
			return nil, nil
		}
		c.lru.MoveToFront(e)
		return s, nil
	}
	if c.lru.Len() >= stmtCacheSize && !c.evict() {
		return nil, nil // every cached statement is busy
	}
	ds, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(sqliteStmt)
	if !ok {
		_ = ds.Close()
		return nil, nil
	}
	s := &cachedStmt{query: query, stmt: st}
	c.stmts[query] = c.lru.PushFront(s)
	return s, nil
}

// evict closes the least recently used statement that is not busy, and
// reports whether there was one.
func (c *cachingConn) evict() bool {
	for e := c.lru.Back(); e != nil; e = e.Prev() {
		s := e.Value.(*cachedStmt)
		if s.busy {
			continue
		}
		c.lru.Remove(e)
		delete(c.stmts, s.query)
		_ = s.stmt.Close()
		return true
	}
	return false
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.shielded {
		ctx = context.WithoutCancel(ctx)
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return s.stmt.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.shielded {
		ctx = context.WithoutCancel(ctx)
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := s.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, stmt: s}, nil
}

// Close closes the cached statements, then the connection.
func (c *cachingConn) Close() error {
	for e := c.lru.Front(); e != nil; e = e.Next() {
		_ = e.Value.(*cachedStmt).stmt.Close()
	}
	c.lru.Init()
	clear(c.stmts)
	return c.sqliteConn.Close()
}

// cachedRows are a query's rows on a cached statement: closing them resets
// the statement (modernc's rows do that, rather than finalize it) and
// frees it for the next use. Souk reads no column types, so the rows pass
// on only what scanning needs.
type cachedRows struct {
	driver.Rows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.stmt.busy = false
	return err
}
