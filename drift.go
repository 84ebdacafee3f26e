package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"strings"

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
type driftPool struct {
	gorm.ConnPool
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

func (d *driftPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := d.ConnPool.QueryContext(ctx, query, args...)
	if err != nil && isDriftError(err) {
		return d.ConnPool.QueryContext(ctx, query, args...)
	}
	return rows, err
}

func (d *driftPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := d.ConnPool.ExecContext(ctx, query, args...)
	if err != nil && isDriftError(err) {
		return d.ConnPool.ExecContext(ctx, query, args...)
	}
	return res, err
}

// BeginTx implements gorm.ConnPoolBeginner; transactions are not wrapped.
func (d *driftPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	switch b := d.ConnPool.(type) {
	case gorm.TxBeginner:
		return b.BeginTx(ctx, opts)
	case gorm.ConnPoolBeginner:
		return b.BeginTx(ctx, opts)
	}
	return nil, gorm.ErrInvalidTransaction
}

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
	db.ConnPool = w
	if db.Statement != nil && db.Statement.ConnPool == w.ConnPool {
		db.Statement.ConnPool = w
	}
}
