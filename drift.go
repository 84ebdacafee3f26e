package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// While a migration rolls out, tenants briefly differ in layout, and a
// statement the driver has cached for a table (a prepared statement, or the
// result description pgx keeps in cache_describe mode) no longer fits after
// the table changed: PostgreSQL answers "cached plan must not change result
// type" (0A000), or "bind message has N result formats but query has M
// columns" (08P01). pgx drops the cached entry on that error, so running the
// statement once more succeeds. driftPool does that retry for statements
// outside a transaction; the failed attempt executed nothing (the error comes
// before execution). Inside a transaction the first error aborts the
// transaction, so there the error reaches the caller, as it must.
//
// On a pool opened with Open it also picks, per statement outside a
// transaction, how pgx runs it: the hot statement texts (hotSet) as cached
// prepared statements, the rest with a cached description only.
type driftPool struct {
	gorm.ConnPool
	hot *hotSet // nil: leave the driver's mode alone
}

// hotSet admits statement texts to run as prepared statements: a text seen
// twice becomes hot while fewer than limit texts are. Every connection's
// statement cache holds limit entries, so the hot texts never thrash it,
// and each backend holds at most limit prepared statements.
type hotSet struct {
	hot   sync.Map // text -> struct{}
	n     atomic.Int64
	limit int64

	mu   sync.Mutex
	seen map[string]uint8
}

func newHotSet(limit int) *hotSet {
	return &hotSet{limit: int64(limit), seen: map[string]uint8{}}
}

// admit reports whether query runs as a prepared statement.
func (h *hotSet) admit(query string) bool {
	if _, ok := h.hot.Load(query); ok {
		return true
	}
	if h.n.Load() >= h.limit {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[query] >= 1 {
		delete(h.seen, query)
		if h.n.Load() < h.limit {
			h.hot.Store(query, struct{}{})
			h.n.Add(1)
		}
		return false // from the next time on
	}
	if len(h.seen) >= 64*int(h.limit) {
		clear(h.seen) // bounded memory for texts seen once
	}
	h.seen[query] = 1
	return false
}

func (d *driftPool) withMode(query string, args []any) []any {
	return d.hot.withMode(query, args)
}

// withMode prepends pgx's cache_statement mode to the arguments of a hot
// statement. Statements without arguments are left alone: pgx sends them
// over the simple protocol, and a script of several statements cannot be
// prepared.
func (h *hotSet) withMode(query string, args []any) []any {
	if h == nil || len(args) == 0 || !h.admit(query) {
		return args
	}
	out := make([]any, 0, len(args)+1)
	out = append(out, pgx.QueryExecModeCacheStatement)
	return append(out, args...)
}

func isDriftError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "0A000":
		return strings.Contains(pgErr.Message, "cached plan must not change result type")
	case "08P01":
		return strings.Contains(pgErr.Message, "bind message has")
	}
	return false
}

// retryOnDrift runs fn, and once more when it failed on drift.
func retryOnDrift[T any](fn func() (T, error)) (T, error) {
	v, err := fn()
	if err != nil && isDriftError(err) {
		return fn()
	}
	return v, err
}

func (d *driftPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	args = d.withMode(query, args)
	return retryOnDrift(func() (*sql.Rows, error) { return d.ConnPool.QueryContext(ctx, query, args...) })
}

// QueryRowContext picks the mode like QueryContext (its error comes with Scan,
// too late for a retry).
func (d *driftPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.ConnPool.QueryRowContext(ctx, query, d.withMode(query, args)...)
}

func (d *driftPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	args = d.withMode(query, args)
	return retryOnDrift(func() (sql.Result, error) { return d.ConnPool.ExecContext(ctx, query, args...) })
}

// BeginTx implements gorm.ConnPoolBeginner. A transaction gets the hot set
// (hotTx) but no drift retry: an error aborts it.
func (d *driftPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var tx gorm.ConnPool
	var err error
	switch b := d.ConnPool.(type) {
	case gorm.TxBeginner:
		tx, err = b.BeginTx(ctx, opts)
	case gorm.ConnPoolBeginner:
		tx, err = b.BeginTx(ctx, opts)
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	if err != nil || d.hot == nil {
		return tx, err
	}
	if t, ok := tx.(*sql.Tx); ok {
		return &hotTx{Tx: t, hot: d.hot, db: d}, nil
	}
	return tx, nil
}

// hotTx gives a transaction's hot statements the prepared mode too. No
// retry here: an error aborts the transaction.
type hotTx struct {
	*sql.Tx
	hot *hotSet
	db  *driftPool
}

func (t *hotTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, query, t.hot.withMode(query, args)...)
}

func (t *hotTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, query, t.hot.withMode(query, args)...)
}

func (t *hotTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, query, t.hot.withMode(query, args)...)
}

// GetDBConn keeps db.DB() working inside a transaction.
func (t *hotTx) GetDBConn() (*sql.DB, error) { return t.db.GetDBConn() }

// GetDBConn implements gorm.GetDBConnector, so db.DB() keeps working.
func (d *driftPool) GetDBConn() (*sql.DB, error) {
	switch p := d.ConnPool.(type) {
	case *sql.DB:
		return p, nil
	case gorm.GetDBConnector:
		return p.GetDBConn()
	}
	return nil, gorm.ErrInvalidDB
}

// Conn keeps db.Connection working.
func (d *driftPool) Conn(ctx context.Context) (*sql.Conn, error) {
	if c, ok := d.ConnPool.(interface {
		Conn(context.Context) (*sql.Conn, error)
	}); ok {
		return c.Conn(ctx)
	}
	return nil, gorm.ErrInvalidDB
}

// installDriftRetry wraps the database's pool (not transactions).
func installDriftRetry(db *gorm.DB) {
	if _, ok := db.ConnPool.(gorm.TxCommitter); ok || db.ConnPool == nil {
		return
	}
	if _, ok := db.ConnPool.(*driftPool); ok {
		return
	}
	w := &driftPool{ConnPool: db.ConnPool}
	if sqlDB, ok := db.ConnPool.(*sql.DB); ok {
		if limit, ok := hybridPools.Load(sqlDB); ok {
			w.hot = newHotSet(limit.(int))
		}
	}
	db.ConnPool = w
	if db.Statement != nil && db.Statement.ConnPool == w.ConnPool {
		db.Statement.ConnPool = w
	}
}
