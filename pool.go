package tenantplugin

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync"

	"github.com/jackc/pgx/v5"

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

// BeginTx implements gorm.ConnPoolBeginner. The transaction runs on a
// connection held for it (pinnedTx), so that routed raw statements inside it
// can travel with their route statement in one round trip (pipeline.go). It
// gets the hot set but no drift retry: an error aborts it.
func (d *driftPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	db, ok := d.ConnPool.(*sql.DB)
	if !ok {
		switch b := d.ConnPool.(type) {
		case gorm.TxBeginner:
			return b.BeginTx(ctx, opts)
		case gorm.ConnPoolBeginner:
			return b.BeginTx(ctx, opts)
		}
		return nil, gorm.ErrInvalidTransaction
	}
	if err := ctx.Err(); err != nil {
		return nil, err // as database/sql's BeginTx
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	t := &pinnedTx{conn: conn, pc: pgxOf(conn), hot: d.hot, db: d, ctx: ctx}
	// database/sql would roll the transaction back from a goroutine of its
	// own when ctx ends, while a routed statement may be using the pgx
	// connection directly: the transaction is begun without ctx's end, and
	// the rollback happens here, once no routed statement holds the
	// connection (pipe).
	if t.Tx, err = conn.BeginTx(context.WithoutCancel(ctx), opts); err != nil {
		conn.Close()
		return nil, err
	}
	t.stop = context.AfterFunc(ctx, func() {
		t.pipe.Lock()
		t.done = true
		_ = t.Tx.Rollback()
		t.pipe.Unlock()
		t.conn.Close()
	})
	return t, nil
}

// pinnedTx is a transaction on a connection held for it: a *sql.Tx begun on
// a *sql.Conn, whose pgx connection (pc, nil on other drivers) pipelines
// routed raw statements (routedTx). Commit and Rollback give the connection
// back; so does the end of the transaction's context, after rolling back, as
// with a *sql.Tx. A caller who never ends the transaction holds the
// connection, as with a *sql.Tx.
type pinnedTx struct {
	*sql.Tx
	conn *sql.Conn
	pc   *pgx.Conn
	hot  *hotSet
	db   *driftPool
	ctx  context.Context
	stop func() bool
	pipe sync.Mutex  // held while a routed statement uses pc (its rows included)
	done bool        // under pipe: ended, pc may serve another caller now
	open driver.Rows // routed rows not yet closed (routedTx)
}

func (t *pinnedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, query, t.hot.withMode(query, args)...)
}

func (t *pinnedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, query, t.hot.withMode(query, args)...)
}

func (t *pinnedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, query, t.hot.withMode(query, args)...)
}

// Commit closes routed rows still open (as a *sql.Tx closes its rows),
// commits and gives the connection back. After the transaction's context
// ended it rolls back and returns the context's error, as a *sql.Tx does.
func (t *pinnedTx) Commit() error {
	if err := t.ctx.Err(); err != nil {
		_ = t.Rollback()
		return err
	}
	return t.end((*sql.Tx).Commit)
}

// Rollback is Commit's twin.
func (t *pinnedTx) Rollback() error { return t.end((*sql.Tx).Rollback) }

// lockPipe takes the connection for a routed statement: errConnBusy while
// another one's rows are open, sql.ErrTxDone once the transaction ended.
func (t *pinnedTx) lockPipe() error {
	if !t.pipe.TryLock() {
		return errConnBusy
	}
	if t.done {
		t.pipe.Unlock()
		return sql.ErrTxDone
	}
	return nil
}

func (t *pinnedTx) end(fn func(*sql.Tx) error) error {
	if t.open != nil {
		t.open.Close()
		t.open = nil
	}
	t.pipe.Lock()
	t.done = true
	err := fn(t.Tx)
	t.pipe.Unlock()
	t.stop()
	t.conn.Close()
	return err
}

// GetDBConn keeps db.DB() working inside a transaction.
func (t *pinnedTx) GetDBConn() (*sql.DB, error) { return t.db.GetDBConn() }

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

// installDriftRetry wraps the database's pool (not transactions). Under
// GORM's PrepareStmt mode it wraps the pool inside *gorm.PreparedStmtDB, so
// that db.ConnPool stays GORM's prepared-statement manager.
func installDriftRetry(db *gorm.DB, hot *hotSet) {
	if _, ok := db.ConnPool.(gorm.TxCommitter); ok || db.ConnPool == nil {
		return
	}
	if ps, ok := db.ConnPool.(*gorm.PreparedStmtDB); ok {
		if _, done := ps.ConnPool.(*driftPool); !done && ps.ConnPool != nil {
			ps.ConnPool = &driftPool{ConnPool: ps.ConnPool, hot: hot}
		}
		return
	}
	if _, ok := db.ConnPool.(*driftPool); ok {
		return
	}
	w := &driftPool{ConnPool: db.ConnPool, hot: hot}
	db.ConnPool = w
	if db.Statement != nil && db.Statement.ConnPool == w.ConnPool {
		db.Statement.ConnPool = w
	}
}
