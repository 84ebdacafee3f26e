package tenantplugin

import (
	"context"
	"database/sql"

	"gorm.io/gorm"
)

// driftPool wraps the database's connection pool: statements outside a
// transaction that fail on layout drift (drift.go) are retried once, and on
// a pool with a hot set (hotset.go) pgx's execution mode is picked per
// statement.
type driftPool struct {
	gorm.ConnPool
	hot *hotSet // nil: leave the driver's mode alone
}

func (d *driftPool) withMode(query string, args []any) []any {
	return d.hot.withMode(query, args)
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
	w := &driftPool{ConnPool: db.ConnPool, hot: hotSetFor(db)}
	db.ConnPool = w
	if db.Statement != nil && db.Statement.ConnPool == w.ConnPool {
		db.Statement.ConnPool = w
	}
}
