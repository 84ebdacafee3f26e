package tenantplugin

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// A routed raw statement travels with its route statement in one network
// round trip: both are queued on the pgx connection and followed by a single
// Sync. Why this and not the alternatives:
//
//   - PostgreSQL runs the messages before a Sync as one implicit transaction
//     (extended query protocol), so set_config(..., true) holds for the
//     statement and ends with it: no pooled connection keeps the path, and
//     no BEGIN and COMMIT are needed outside a transaction. Inside the
//     caller's transaction the same pipeline adds the route in front and
//     the resets behind (resetPath), so the path ends with the statement.
//   - The statement is parsed after the route has run, so its names resolve
//     under the tenant's path. pgx's own batches cannot do that: in its
//     cache modes they prepare or describe new statements in a round trip of
//     their own, before the route, under the connection's default path (a
//     missing table would abort the caller's transaction). So the library
//     drives pgconn's pipeline itself: on pools that use prepared statements
//     the route and the statement become prepared statements of the
//     connection, prepared after the route on first use (prepared.go: no
//     parse or plan per execution, as pgx does for unrouted statements);
//     on pools configured without them (a DSN naming exec, simple_protocol
//     or cache_describe, as behind PgBouncer before 1.21) the statement is
//     described once per connection the same way and then parsed unnamed
//     with the route, one round trip. Either way arguments and results are
//     encoded by the server's description of the statement, as pgx's typed
//     modes do, never guessed from Go types.
//   - A multi-statement simple-protocol string would inline the arguments in
//     the text; it is used only for scripts without arguments (text holding
//     ';'), which pgx sends that way too.
//
// The rows stream: the caller reads them from the connection as they come
// (rows.go), and the connection goes back to the pool when they are closed.

// pgxOf returns the pgx connection under a database/sql connection, or nil
// when the driver is not pgx's stdlib.
func pgxOf(c *sql.Conn) *pgx.Conn {
	var pc *pgx.Conn
	_ = c.Raw(func(dc any) error {
		if s, ok := dc.(*stdlib.Conn); ok {
			pc = s.Conn()
		}
		return nil
	})
	return pc
}

// sqlDBOf returns the *sql.DB under a pool, or nil.
func sqlDBOf(pool gorm.ConnPool) *sql.DB {
	switch p := pool.(type) {
	case *sql.DB:
		return p
	case gorm.GetDBConnector:
		if db, err := p.GetDBConn(); err == nil {
			return db
		}
	}
	return nil
}

var builders = sync.Pool{New: func() any { return new(pgx.ExtendedQueryBuilder) }}

// results are a routed statement's results, read after the route's: next
// returns the statement's next result, finish reads what is left and ends
// the round trip, returning its first error.
type results interface {
	next() (*pgconn.ResultReader, error)
	finish() error
}

// batchResults reads a pgconn batch or a simple-protocol script. With cs
// and sd set, an error saying the prepared statement sd no longer fits this
// tenant forgets it (prepared.go).
type batchResults struct {
	mrr *pgconn.MultiResultReader
	cs  *connStatements
	sd  *pgconn.StatementDescription
}

func (b batchResults) next() (*pgconn.ResultReader, error) {
	if b.mrr.NextResult() {
		return b.mrr.ResultReader(), nil
	}
	return nil, b.finish()
}

func (b batchResults) finish() error {
	err := b.mrr.Close()
	if err != nil && b.cs != nil {
		b.cs.failed(err, b.sd)
	}
	return err
}

// routing is what travels with a routed statement: the route statement and
// its arguments before it and, inside the caller's transaction, the
// statements that reset what the route set, after it (resetPath).
type routing struct {
	v     *tenantValue
	sql   string
	args  []any
	reset []string
}

// Inside the caller's transaction the route's set_config(..., true) would
// last until the transaction ends: the statements after the routed one (a
// GORM-built statement and the triggers it fires, raw SQL without a tenant
// or for the shared schema) would run on the tenant's path, and with tenant
// roles as the tenant's role. So the pipeline ends with these resets (a
// breaker's finding: a trigger fired by tenant b's insert wrote into tenant
// a's table after a raw statement of a). They set the connection's default
// (the value PostgreSQL's RESET would give, for this transaction only) and
// are utility statements: cheaper than a SELECT, and nothing to plan.
var (
	resetPath     = []string{"SET LOCAL search_path TO DEFAULT"}
	resetPathRole = []string{"SET LOCAL search_path TO DEFAULT", "SET LOCAL role TO DEFAULT"}
)

// maxResets is the length of the longest resets (resetPathRole).
const maxResets = 2

// resetFor returns the resets of the route statement route (see resetPath).
func resetFor(route string) []string {
	if route == routeRoleSQL {
		return resetPathRole
	}
	return resetPath
}

// sendRouted sends the route, query and the resets on pc in one round trip
// (two the first time a connection sees the text with prepared statements,
// as pgx's own cache mode) and reads the route's result. On failure
// everything has been read and the error comes from the route (routeErr
// true) or from the statement.
func sendRouted(ctx context.Context, pc *pgx.Conn, tr pgx.QueryTracer, named bool, rt routing, query string, args []any) (res results, routeErr bool, err error) {
	rctx := ctx
	if tr != nil {
		rctx = tr.TraceQueryStart(ctx, pc, pgx.TraceQueryStartData{SQL: rt.sql, Args: rt.args})
	}
	var tag pgconn.CommandTag
	switch {
	case len(args) == 0 && strings.Contains(query, ";"):
		// A script of several statements cannot be a prepared (or unnamed
		// extended) statement: like pgx for a statement without arguments,
		// the simple protocol, the route first. The route's values are
		// validated names. (A lone statement ending in ';' comes here too.)
		script := inlineRoute(rt.sql, rt.args) + ";\n" + query
		for _, r := range rt.reset {
			script += "\n;" + r // after a newline: a last line comment ends
		}
		res, tag, routeErr, err = readRoute(batchResults{mrr: pc.PgConn().Exec(ctx, script)})
	case !named && basicArgs(args):
		// A pool without prepared statements (see pipelineSettings): the
		// statement is parsed with the route each time, its parameter types
		// inferred by the server for this tenant's tables, as pgx's own
		// exec mode does; Go's basic types encode exactly in text.
		batch := &pgconn.Batch{}
		batch.ExecParams(rt.sql, textParams(rt.args), nil, nil, nil)
		eqb := builders.Get().(*pgx.ExtendedQueryBuilder)
		if err = eqb.Build(pc.TypeMap(), nil, args); err == nil {
			batch.ExecParams(query, eqb.ParamValues, nil, eqb.ParamFormats, eqb.ResultFormats)
			for _, r := range rt.reset {
				batch.ExecParams(r, nil, nil, nil, nil)
			}
			res, tag, routeErr, err = readRoute(batchResults{mrr: pc.PgConn().ExecBatch(ctx, batch)})
		}
		builders.Put(eqb)
	default:
		res, tag, routeErr, err = sendPrepared(ctx, pc, named, rt, query, args)
	}
	if tr != nil {
		tr.TraceQueryEnd(rctx, pc, pgx.TraceQueryEndData{CommandTag: tag, Err: err})
	}
	return res, routeErr, err
}

// readRoute reads the route statement's result off res.
func readRoute(res results) (results, pgconn.CommandTag, bool, error) {
	rr, err := res.next()
	if err == nil && rr == nil {
		err = errPipeline
	}
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = rr.Close()
	}
	if err != nil {
		return nil, tag, true, firstErr(err, res.finish())
	}
	return res, tag, false, nil
}

// traced reports the statement of a pipeline to the connection's tracer
// (pgx.ConnConfig.Tracer, e.g. OpenTelemetry or a query log), as pgx
// reports the statements it sends itself: it returns the function that
// reports its end.
func traced(ctx context.Context, pc *pgx.Conn, tr pgx.QueryTracer, query string, args []any) func(pgconn.CommandTag, error) {
	if tr == nil {
		return func(pgconn.CommandTag, error) {}
	}
	ctx = tr.TraceQueryStart(ctx, pc, pgx.TraceQueryStartData{SQL: query, Args: args})
	return func(tag pgconn.CommandTag, err error) {
		tr.TraceQueryEnd(ctx, pc, pgx.TraceQueryEndData{CommandTag: tag, Err: err})
	}
}

// textParams encodes the route statement's arguments (strings) in text format.
func textParams(args []any) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a.(string))
	}
	return out
}

// inlineRoute writes the route statement with its arguments as literals.
// They are the library's own quoted names and paths, built from validated
// names; quoteLiteral escapes them anyway.
func inlineRoute(route string, args []any) string {
	for i := len(args); i >= 1; i-- {
		route = strings.ReplaceAll(route, "$"+string(rune('0'+i)), quoteLiteral(args[i-1].(string)))
	}
	return route
}

// pipelinedExec runs a routed statement that returns no rows to the caller.
func pipelinedExec(ctx context.Context, pc *pgx.Conn, set pipelineSettings, rt routing, query string, args []any) (sql.Result, error) {
	tr := set.tracer
	res, err := sendRoutedFor(ctx, pc, set, rt, query, args)
	if err != nil {
		return nil, err
	}
	end := traced(ctx, pc, tr, query, args)
	// The statement's tag is the last one before the resets' (a script's
	// last statement's, as database/sql reports it).
	var recent [maxResets + 1]pgconn.CommandTag
	n := 0
	for {
		rr, rerr := res.next()
		if rerr != nil || rr == nil {
			err = rerr
			break
		}
		tag, cerr := rr.Close()
		if err = cerr; err != nil {
			break
		}
		recent[n%len(recent)] = tag
		n++
	}
	var tag pgconn.CommandTag
	if n > len(rt.reset) {
		tag = recent[(n-1-len(rt.reset))%len(recent)]
	}
	err = firstErr(err, res.finish())
	end(tag, err)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

// pipelinedQuery runs a routed query and returns its rows, streaming;
// release runs when they are closed.
func pipelinedQuery(ctx context.Context, pc *pgx.Conn, set pipelineSettings, rt routing, query string, args []any, release func() error) (driver.Rows, error) {
	tr := set.tracer
	res, err := sendRoutedFor(ctx, pc, set, rt, query, args)
	if err != nil {
		return nil, err
	}
	end := traced(ctx, pc, tr, query, args)
	rr, err := res.next()
	if err == nil && rr == nil {
		err = errPipeline
	}
	if err != nil {
		err = firstErr(err, res.finish())
		end(pgconn.CommandTag{}, err)
		return nil, err
	}
	// Read up to the first row, as pgx's stdlib does in QueryContext: an
	// error before it is the query's error.
	more := rr.NextRow()
	if !more {
		if tag, err := rr.Close(); err != nil {
			err = firstErr(err, res.finish())
			end(tag, err)
			return nil, err
		}
	}
	return newPgxRows(pc.TypeMap(), rr, more, func(tag pgconn.CommandTag, err error) error {
		if ferr := res.finish(); err == nil {
			err = ferr
		}
		end(tag, err)
		return errors.Join(err, release())
	}), nil
}

// isSyntaxError reports PostgreSQL's syntax_error (42601).
func isSyntaxError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42601"
}

// sendRoutedFor is sendRouted for rt.v: a failed route statement becomes
// routeError's ErrUnknownTenant or TenantError.
func sendRoutedFor(ctx context.Context, pc *pgx.Conn, set pipelineSettings, rt routing, query string, args []any) (results, error) {
	res, routeErr, err := sendRouted(ctx, pc, set.tracer, set.named, rt, query, args)
	switch {
	case routeErr && (ctx.Err() != nil || pgconn.Timeout(err) || isSyntaxError(err)):
		// The round trip was cut before the route's result arrived: the
		// server sends it with the statement's, so the statement ran out of
		// time, not the route (a breaker's finding: "set search_path:
		// timeout"). Or a script did not parse: PostgreSQL parses a
		// simple-protocol string whole before running its first statement,
		// the route.
		err = &TenantError{Tenant: rt.v.label(), Op: "raw statement", Err: err}
	case routeErr:
		err = routeError(rt.v, err)
	}
	return res, err
}

// pipelineSettings are what routed statements need of the pool: the query
// tracer (pgx.ConnConfig.Tracer, e.g. OpenTelemetry or a query log), read
// once from a connection (every connection of the pool comes from one
// configuration), and whether raw statements may become prepared statements
// (prepared.go): on pgx's default mode and Open's, not when a DSN or code
// names another mode (exec, simple_protocol, cache_describe: a pooler
// without prepared statements, such as PgBouncer before 1.21).
type pipelineSettings struct {
	tracer pgx.QueryTracer
	named  bool
}

func (p *Plugin) pipelineSettings(pc *pgx.Conn) pipelineSettings {
	p.pipeOnce.Do(func() {
		p.pipe.tracer = pc.Config().Tracer
		p.pipe.named = p.prepares
	})
	return p.pipe
}

// pinnedOf returns the pinnedTx under a transaction's pool, or nil.
func pinnedOf(pool gorm.ConnPool) *pinnedTx {
	switch t := pool.(type) {
	case *pinnedTx:
		return t
	case *gorm.PreparedStmtTX:
		p, _ := t.Tx.(*pinnedTx)
		return p
	}
	return nil
}

// routedTx is the caller's transaction (pinnedTx) while it runs one routed
// statement: the route statement travels with the statement, in one round
// trip, and sets the path for every such statement (a savepoint rolled back
// since cannot leave a stale one).
type routedTx struct {
	*pinnedTx
	orig gorm.ConnPool // the statement's pool: the pinnedTx, or GORM's PreparedStmtTX around it
	rt   routing       // the route statement and the resets after the statement
	p    *Plugin
}

func (r *routedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := checkScript(r.rt.v, query); err != nil {
		return nil, err
	}
	if err := r.lockPipe(); err != nil {
		return nil, err
	}
	defer r.pipe.Unlock()
	return pipelinedExec(ctx, r.pc, r.p.pipelineSettings(r.pc), r.rt, query, args)
}

func (r *routedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := r.query(ctx, query, args)
	if err != nil {
		return nil, err
	}
	return asSQLRows(ctx, rows)
}

func (r *routedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	rows, err := r.query(ctx, query, args)
	return asSQLRow(ctx, rows, err)
}

// PrepareContext is refused, as on routedPool: the route would not travel
// with the prepared statement's later executions.
func (r *routedTx) PrepareContext(context.Context, string) (*sql.Stmt, error) {
	return nil, fmt.Errorf("tenantplugin: tenant %q: prepared raw statements are not routed; run the statement itself", r.rt.v.label())
}

func (r *routedTx) query(ctx context.Context, query string, args []any) (driver.Rows, error) {
	if err := checkScript(r.rt.v, query); err != nil {
		return nil, err
	}
	if err := r.lockPipe(); err != nil {
		return nil, err
	}
	rows, err := pipelinedQuery(ctx, r.pc, r.p.pipelineSettings(r.pc), r.rt, query, args,
		func() error { r.pipe.Unlock(); return nil })
	if err != nil {
		r.pipe.Unlock()
		return nil, err
	}
	r.open = rows
	return rows, nil
}

// firstErr returns a, or b when a is nil.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
