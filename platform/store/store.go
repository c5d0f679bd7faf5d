// Package store opens a service's database, SQLite or PostgreSQL, from one
// URL, and applies the service's embedded goose migrations. Services write
// portable SQL: $n placeholders, TEXT, BIGINT, TIMESTAMP, RETURNING.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names the database engine behind a DB.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a connection pool and the engine it talks to. Queries run on the
// embedded pool; ExecContext, BeginTx and InTx run on the writer. On
// PostgreSQL both are the same pool. On SQLite, which takes one writer at a
// time, the writer is a pool of one connection: writers queue in Go, in
// order, instead of polling SQLite's lock with sleeps of up to 100 ms, and
// the readers are read-only connections that WAL lets run beside it.
type DB struct {
	*sql.DB
	Dialect Dialect
	writer  *sql.DB
	group   *group // on SQLite, the writers that commit together
}

// ExecContext runs a statement that changes data, on the writer: on
// SQLite, in a group's transaction (InTx).
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if db.group == nil {
		return db.writer.ExecContext(ctx, query, args...)
	}
	var res sql.Result
	err := db.group.do(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// BeginTx starts a transaction on the writer.
func (db *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return db.writer.BeginTx(ctx, opts)
}

// plainOnLoopback returns a PostgreSQL URL whose hosts are all on
// loopback, and which says nothing of TLS (no ssl… parameter, no
// PGSSLMODE), with sslmode=allow: connections try without TLS first, and
// with it if the server refuses them. The driver's default, prefer, is TLS
// first, unverified, which on loopback guards nothing that leaves the
// machine and costs about a fifth of the saga's CPU per order
// (docs/benchmarks.md). Any other URL is returned as it is.
func plainOnLoopback(raw string, getenv func(string) string) string {
	u, err := neturl.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" || getenv("PGSSLMODE") != "" {
		return raw
	}
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(k, "ssl") || k == "host" || k == "hostaddr" {
			return raw
		}
	}
	for _, hp := range strings.Split(u.Host, ",") {
		h := hp
		if host, _, err := net.SplitHostPort(hp); err == nil {
			h = host
		}
		h = strings.Trim(h, "[]")
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return raw
		}
	}
	q.Set("sslmode", "allow")
	u.RawQuery = q.Encode()
	return u.String()
}

// Pools names the connection pools, for their metrics: one on
// PostgreSQL, a reader and a writer pool on SQLite.
func (db *DB) Pools() map[string]*sql.DB {
	if db.writer == db.DB {
		return map[string]*sql.DB{"": db.DB}
	}
	return map[string]*sql.DB{"read": db.DB, "write": db.writer}
}

// Close closes the readers and the writer.
func (db *DB) Close() error {
	err := db.DB.Close()
	if db.writer != db.DB {
		err = errors.Join(err, db.writer.Close())
	}
	return err
}

// Open connects to url: postgres://… or postgresql://… for PostgreSQL, and
// anything else for a SQLite file, optionally written sqlite:path. A SQLite
// file is created with its directory if missing, in WAL mode with a busy
// timeout, foreign keys on and write transactions that take the lock at
// BEGIN (so two writers wait for each other instead of failing); each of
// its connections keeps the statements it ran last prepared.
func Open(ctx context.Context, url string) (*DB, error) {
	var db *DB
	path, isSQLite := SQLitePath(url)
	switch {
	case !isSQLite:
		pool, err := sql.Open("pgx", plainOnLoopback(url, os.Getenv))
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		pool.SetMaxOpenConns(max(8, 4*runtime.GOMAXPROCS(0)))
		pool.SetMaxIdleConns(max(8, 4*runtime.GOMAXPROCS(0)))
		pool.SetConnMaxIdleTime(5 * time.Minute)
		db = &DB{DB: pool, Dialect: Postgres, writer: pool}
	default:
		if path == "" {
			return nil, errors.New("open sqlite: empty path")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		dsn := "file:" + path + sep + "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
			"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate&_time_format=sqlite"
		drv := &sqlite.Driver{}
		writer := sql.OpenDB(sqliteConnector{dsn: dsn, driver: drv})
		writer.SetMaxOpenConns(1)
		writer.SetMaxIdleConns(1)
		readers := sql.OpenDB(sqliteConnector{dsn: dsn + "&_pragma=query_only(1)", driver: drv})
		// Every connection keeps its pragmas; keep them open rather than
		// paying for new ones.
		n := max(4, runtime.GOMAXPROCS(0))
		readers.SetMaxOpenConns(n)
		readers.SetMaxIdleConns(n)
		db = &DB{DB: readers, Dialect: SQLite, writer: writer, group: &group{writer: writer}}
		// The writer creates the file and sets WAL mode before any reader,
		// which is read-only, opens it.
		if err := writer.PingContext(ctx); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("connect to sqlite database: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", db.Dialect, err)
	}
	return db, nil
}

// SQLitePath returns the file a SQLite URL names, and false for a
// PostgreSQL URL.
func SQLitePath(url string) (string, bool) {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return "", false
	}
	return strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//"), true
}

// Migrate applies the migrations in fsys (goose SQL files at its root) that
// are not applied yet. service names the version table, so that services
// sharing one PostgreSQL database keep separate histories; on PostgreSQL an
// advisory lock keeps concurrent replicas from migrating at once.
func (db *DB) Migrate(ctx context.Context, service string, fsys fs.FS, log *slog.Logger) error {
	opts := []goose.ProviderOption{
		goose.WithTableName(service + "_schema_version"),
		goose.WithDisableGlobalRegistry(true),
	}
	dialect := goose.DialectSQLite3
	if db.Dialect == Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.writer, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrations of %s: %w", service, err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", service, err)
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version,
			"file", r.Source.Path, "duration_ms", r.Duration.Milliseconds())
	}
	return nil
}

// InTx runs fn in a transaction on the writer, committing if fn returns nil
// and rolling back otherwise. On SQLite the transaction may be a group's:
// writers queued at once share one commit, each in a savepoint of its own,
// and InTx returns after that commit (group).
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	// A span, if the caller is in a trace: the transaction is the unit of
	// database work worth seeing.
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("souk/store").Start(ctx, "db transaction")
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if db.group != nil {
		return db.group.do(ctx, fn)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// IsUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure, on either engine.
func IsUniqueViolation(err error) bool {
	if e, ok := errors.AsType[*sqlite.Error](err); ok {
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	if e, ok := errors.AsType[*pgconn.PgError](err); ok {
		return e.Code == "23505"
	}
	return false
}

// Values returns the VALUES list of a statement that inserts rows rows of
// cols columns each: ($1, $2), ($3, $4) for Values(2, 2). One statement
// for many rows is one round trip, however many rows.
func Values(rows, cols int) string { return ValuesFrom(1, rows, cols) }

// ValuesFrom is Values with parameters numbered from first, for a statement
// that has others before them.
func ValuesFrom(first, rows, cols int) string {
	var b strings.Builder
	n := first
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", n)
			n++
		}
		b.WriteByte(')')
	}
	return b.String()
}
