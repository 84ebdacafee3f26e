package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// routedPool runs statements that must be routed by search_path (raw SQL)
// when no transaction is open: each one gets a transaction of its own,
//
//	BEGIN; SELECT set_config('search_path', $1, true); <statement>; COMMIT
//
// so the setting ends with the transaction and no pooled connection keeps it.
// A query's rows are read completely before COMMIT and handed to the caller
// from memory (see buffered.go); wrap large raw reads in a transaction to
// stream them. When GORM opens its default transaction on this pool (create,
// update, delete), the search_path is set right after BEGIN instead.
type routedPool struct {
	inner     gorm.ConnPool
	routeSQL  string // set_config of search_path (and role)
	routeArgs []any
	v         *tenantValue
}

var errNoBegin = errors.New("tenantplugin: the connection pool cannot begin transactions, so raw SQL cannot be routed")

func (r *routedPool) begin(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, gorm.TxCommitter, error) {
	var tx gorm.ConnPool
	var err error
	switch b := r.inner.(type) {
	case gorm.TxBeginner:
		tx, err = b.BeginTx(ctx, opts)
	case gorm.ConnPoolBeginner:
		tx, err = b.BeginTx(ctx, opts)
	default:
		return nil, nil, errNoBegin
	}
	if err != nil {
		return nil, nil, r.wrap("begin", err)
	}
	c, ok := tx.(gorm.TxCommitter)
	if !ok {
		return nil, nil, errNoBegin
	}
	if _, err := tx.ExecContext(ctx, r.routeSQL, r.routeArgs...); err != nil {
		_ = c.Rollback()
		return nil, nil, routeError(r.v, err)
	}
	return tx, c, nil
}

func (r *routedPool) wrap(op string, err error) error {
	return &TenantError{Tenant: r.v.label(), Op: op, Err: err}
}

// BeginTx implements gorm.ConnPoolBeginner: GORM's default transaction gets
// the search_path right after BEGIN.
func (r *routedPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, _, err := r.begin(ctx, opts)
	return tx, err
}

// PrepareContext is refused: a prepared statement outlives the transaction
// that would carry the search_path.
func (r *routedPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return nil, fmt.Errorf("tenantplugin: tenant %q: prepared raw statements are only routed inside a transaction", r.v.label())
}

// ExecContext runs query in a transaction of its own under the search_path.
// Raw SQL has the same text for every tenant, so the driver's cached plan or
// description of it may fit another tenant's layout (mid-migration): such a
// failure is retried once, in a new transaction.
func (r *routedPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return retryOnDrift(func() (sql.Result, error) { return r.exec(ctx, query, args) })
}

func (r *routedPool) exec(ctx context.Context, query string, args []any) (sql.Result, error) {
	tx, c, err := r.begin(ctx, nil)
	if err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		_ = c.Rollback()
		return nil, err
	}
	if err := c.Commit(); err != nil {
		return nil, r.wrap("commit", err)
	}
	return res, nil
}

// QueryContext runs query in a transaction of its own under the search_path
// and returns its rows from memory.
func (r *routedPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	res, err := r.query(ctx, query, args)
	if err != nil {
		return nil, err
	}
	return res.rows(ctx)
}

// QueryRowContext is QueryContext for one row.
func (r *routedPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	res, err := r.query(ctx, query, args)
	if err != nil {
		res = &bufferedResult{err: err}
	}
	return res.row(ctx)
}

func (r *routedPool) query(ctx context.Context, query string, args []any) (*bufferedResult, error) {
	return retryOnDrift(func() (*bufferedResult, error) { return r.queryOnce(ctx, query, args) })
}

func (r *routedPool) queryOnce(ctx context.Context, query string, args []any) (*bufferedResult, error) {
	tx, c, err := r.begin(ctx, nil)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		_ = c.Rollback()
		return nil, err
	}
	res, err := bufferRows(rows)
	if err != nil {
		_ = c.Rollback()
		return nil, err
	}
	if err := c.Commit(); err != nil {
		return nil, r.wrap("commit", err)
	}
	return res, nil
}
