package tenantplugin

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"

	"gorm.io/gorm"
)

// routedPool runs a statement that must be routed by search_path (raw SQL,
// or a GORM statement carrying raw fragments) when no transaction is open.
// On a pgx pool the route statement and the statement travel together in one
// round trip and one implicit transaction (pipeline.go); the rows stream, on
// a connection held until they are closed. On other pools each statement
// gets a transaction of its own,
//
//	BEGIN; SELECT set_config('search_path', $1, true); <statement>; COMMIT
//
// whose rows also stream and whose COMMIT comes when they are closed. Either
// way the setting ends with the transaction and no pooled connection keeps
// it. When GORM opens its default transaction on this pool (create, update,
// delete), the search_path is set right after BEGIN instead.
type routedPool struct {
	inner gorm.ConnPool
	rt    routing // the route statement (no resets: the transaction ends with the statement)
	p     *Plugin
}

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
	if _, err := tx.ExecContext(ctx, r.rt.sql, r.rt.args...); err != nil {
		_ = c.Rollback()
		return nil, nil, routeError(r.rt.v, err)
	}
	return tx, c, nil
}

// pinned holds a connection of the pool for one routed statement and returns
// it with its pgx connection; nil, nil when the pool is not pgx's stdlib
// (the statement then runs in a transaction of its own).
func (r *routedPool) pinned(ctx context.Context) (*sql.Conn, *pgx.Conn, error) {
	db := sqlDBOf(r.inner)
	if db == nil {
		return nil, nil, nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, nil, r.wrap("connect", err)
	}
	if pc := pgxOf(conn); pc != nil {
		return conn, pc, nil
	}
	conn.Close()
	return nil, nil, nil
}

func (r *routedPool) wrap(op string, err error) error {
	return &TenantError{Tenant: r.rt.v.label(), Op: op, Err: err}
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
	return nil, fmt.Errorf("tenantplugin: tenant %q: prepared raw statements are only routed inside a transaction", r.rt.v.label())
}

// ExecContext runs query under the search_path in a transaction of its own.
func (r *routedPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := checkScript(r.rt.v, query); err != nil {
		return nil, err
	}
	conn, pc, err := r.pinned(ctx)
	if err != nil {
		return nil, err
	}
	if pc != nil {
		defer conn.Close()
		// A prepared raw statement may no longer fit this tenant's layout
		// (drift.go): it is prepared again and run once more.
		return retryOnStale(func() (sql.Result, error) {
			return pipelinedExec(ctx, pc, r.p.pipelineSettings(pc), r.rt, query, args)
		})
	}
	// Raw SQL has the same text for every tenant, so the driver's cached
	// plan or description of it may fit another tenant's layout
	// (mid-migration): such a failure is retried once, in a new transaction.
	return retryOnDrift(func() (sql.Result, error) { return r.execInTx(ctx, query, args) })
}

func (r *routedPool) execInTx(ctx context.Context, query string, args []any) (sql.Result, error) {
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

// QueryContext runs query under the search_path in a transaction of its own
// and streams its rows; the transaction ends when they are closed or read to
// the end.
func (r *routedPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := r.query(ctx, query, args)
	if err != nil {
		return nil, err
	}
	return asSQLRows(ctx, rows)
}

// QueryRowContext is QueryContext for one row.
func (r *routedPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	rows, err := r.query(ctx, query, args)
	return asSQLRow(ctx, rows, err)
}

func (r *routedPool) query(ctx context.Context, query string, args []any) (driver.Rows, error) {
	if err := checkScript(r.rt.v, query); err != nil {
		return nil, err
	}
	conn, pc, err := r.pinned(ctx)
	if err != nil {
		return nil, err
	}
	if pc != nil {
		rows, err := retryOnStale(func() (driver.Rows, error) {
			return pipelinedQuery(ctx, pc, r.p.pipelineSettings(pc), r.rt, query, args, conn.Close)
		})
		if err != nil {
			conn.Close()
		}
		return rows, err
	}
	return retryOnDrift(func() (driver.Rows, error) { return r.queryInTx(ctx, query, args) })
}

func (r *routedPool) queryInTx(ctx context.Context, query string, args []any) (driver.Rows, error) {
	tx, c, err := r.begin(ctx, nil)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		_ = c.Rollback()
		return nil, err
	}
	return newTxRows(rows, func(ok bool) error {
		if !ok {
			return c.Rollback()
		}
		if err := c.Commit(); err != nil {
			return r.wrap("commit", err)
		}
		return nil
	})
}
