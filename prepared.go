package tenantplugin

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Routed raw statements as prepared statements. On a pool that uses
// prepared statements (pgx's default mode, or tenantplugin.Open's), the
// route statement and each raw statement text are prepared once per
// connection, like pgx's own statement cache does for the statements it
// sends, so that the server neither parses nor (after its first executions)
// plans them again. The difference from pgx's cache: the statement is
// prepared in a pipeline after the route statement, so that its names
// resolve under the tenant's search_path (the server re-analyzes it when a
// later execution runs under another path). The first use of a text on a
// connection costs two round trips (prepare, then execute), every later one
// one round trip, as with pgx.
//
// Each connection keeps at most maxRawStatements texts (least recently used
// first out, deallocated in the next round trip): about 10-20 kB of server
// memory per statement, so at most a few MB per connection, and a map entry
// per text on the client.
const maxRawStatements = 256

// connStatements are the statements the library prepared on one connection.
// The connection's holder is its only user, so no lock is needed.
type connStatements struct {
	byText  map[string]*list.Element // of *pgconn.StatementDescription
	lru     list.List
	closing []string // names to deallocate in the next round trip
}

const customDataKey = "tenantplugin.statements"

func statementsOf(pc *pgx.Conn) *connStatements {
	data := pc.PgConn().CustomData()
	if cs, ok := data[customDataKey].(*connStatements); ok {
		return cs
	}
	cs := &connStatements{byText: map[string]*list.Element{}}
	data[customDataKey] = cs
	return cs
}

func (cs *connStatements) lookup(sql string) *pgconn.StatementDescription {
	e, ok := cs.byText[sql]
	if !ok {
		return nil
	}
	cs.lru.MoveToFront(e)
	return e.Value.(*pgconn.StatementDescription)
}

// nameFor names the prepared statement of sql after its text, as pgx names
// its own: the same name always means the same text, so behind a pooler
// that does not keep prepared statements apart (PgBouncer before 1.21 in
// transaction mode, misconfigured) a mix-up fails ("already exists", "does
// not exist") instead of running another text.
func nameFor(sql string) string {
	sum := sha256.Sum256([]byte(sql))
	return statementPrefix + hex.EncodeToString(sum[:16])
}

const statementPrefix = "tenantplugin_"

func (cs *connStatements) add(sd *pgconn.StatementDescription) {
	cs.byText[sd.SQL] = cs.lru.PushFront(sd)
	for cs.lru.Len() > maxRawStatements {
		cs.forget(cs.lru.Back().Value.(*pgconn.StatementDescription))
	}
}

// failed forgets what err says no longer fits: every statement when one of
// them no longer exists on the server (isMissingStatement: DEALLOCATE ALL or
// DISCARD ALL ran on the connection), sd when its prepared form no longer
// fits this tenant (isStaleStatement). The next use prepares them again.
func (cs *connStatements) failed(err error, sd *pgconn.StatementDescription) {
	switch {
	case isMissingStatement(err):
		for cs.lru.Len() > 0 {
			cs.forget(cs.lru.Back().Value.(*pgconn.StatementDescription))
		}
	case isStaleStatement(err) && sd != nil:
		cs.forget(sd)
	}
}

// forget drops sd and deallocates it with the next round trip (closing a
// statement that does not exist is no error in PostgreSQL).
func (cs *connStatements) forget(sd *pgconn.StatementDescription) {
	if e, ok := cs.byText[sd.SQL]; ok && e.Value == sd {
		cs.lru.Remove(e)
		delete(cs.byText, sd.SQL)
	}
	if sd.Name != "" {
		cs.closing = append(cs.closing, sd.Name)
	}
}

// pipelineResults reads the route's and the statement's results off a
// pgconn pipeline.
type pipelineResults struct {
	p    *pgconn.Pipeline
	cs   *connStatements
	sd   *pgconn.StatementDescription // the statement's
	left int                          // results still to read
}

func (r *pipelineResults) next() (*pgconn.ResultReader, error) {
	if r.left == 0 {
		return nil, nil
	}
	r.left--
	res, err := r.p.GetResults()
	if err != nil {
		r.failed(err)
		return nil, err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return nil, errPipeline
	}
	return rr, nil
}

// failed forgets the statement when the error says its prepared form no
// longer fits this tenant (isStaleStatement): the next use prepares it again.
func (r *pipelineResults) failed(err error) {
	r.cs.failed(err, r.sd)
}

func (r *pipelineResults) finish() error {
	var first error
	for {
		res, err := r.p.GetResults()
		if err != nil {
			r.failed(err)
			first = firstErr(first, err)
			break
		}
		if _, ok := res.(*pgconn.PipelineSync); ok || res == nil {
			break
		}
	}
	return firstErr(first, r.p.Close())
}

// sendPrepared runs the route, query and the resets on pc with query's
// description known: as prepared statements of pc (named), or parsed
// unnamed with the parameter types the description gives (not named: pools
// configured without prepared statements). What pc lacks is prepared or
// described first, in a round trip that runs the route before it (see
// above). The resets are prepared statements too on named pools
// (preparedResets), parsed each time on the others. It returns the query's
// results after reading the route's.
func sendPrepared(ctx context.Context, pc *pgx.Conn, named bool, rt routing, query string, args []any) (results, pgconn.CommandTag, bool, error) {
	route, routeArgs := rt.sql, rt.args
	cs := statementsOf(pc)
	rsd, qsd := cs.lookup(route), cs.lookup(query)
	if !named {
		rsd = &pgconn.StatementDescription{SQL: route} // parsed each time
	}
	if rsd == nil || qsd == nil {
		p := pc.PgConn().StartPipeline(ctx)
		sendClosing(p, cs)
		newR := rsd == nil
		if newR {
			rsd = &pgconn.StatementDescription{Name: nameFor(route), SQL: route}
			p.SendPrepare(rsd.Name, route, nil)
		}
		sendRoute(p, rsd, routeArgs)
		newQ := qsd == nil
		if newQ {
			qsd = &pgconn.StatementDescription{SQL: query}
			if named {
				qsd.Name = nameFor(query)
			}
			p.SendPrepare(qsd.Name, query, nil)
		}
		if err := prepareRound(p, cs, rsd, qsd, newR, newQ); err != nil {
			return nil, pgconn.CommandTag{}, err.route, err.err
		}
	}
	eqb := builders.Get().(*pgx.ExtendedQueryBuilder)
	defer builders.Put(eqb)
	if err := eqb.Build(pc.TypeMap(), qsd, args); err != nil {
		return nil, pgconn.CommandTag{}, false, err
	}
	formats := resultFormats(qsd.Fields)
	var resets [maxResets]*pgconn.StatementDescription
	if named {
		var err error
		if resets, err = preparedResets(ctx, pc, cs, rt.reset); err != nil {
			return nil, pgconn.CommandTag{}, false, err
		}
	}
	if len(cs.closing) == 0 && qsd.Name != "" && rsd.Name != "" && rsd.Fields != nil {
		// Both prepared and described, nothing to deallocate: the lighter
		// pgconn.Batch (one write, one Sync; no Describe: should a
		// re-analysis under this tenant's path change the result, the
		// server refuses to run it).
		batch := &pgconn.Batch{}
		batch.ExecStatement(rsd, textParams(routeArgs), nil, nil)
		batch.ExecStatement(qsd, eqb.ParamValues, eqb.ParamFormats, formats)
		for _, sd := range resets[:len(rt.reset)] {
			batch.ExecStatement(sd, nil, nil, nil)
		}
		res, tag, routeErr, err := readRoute(batchResults{mrr: pc.PgConn().ExecBatch(ctx, batch), cs: cs, sd: qsd})
		return res, tag, routeErr, err
	}
	p := pc.PgConn().StartPipeline(ctx)
	sendClosing(p, cs)
	sendRoute(p, rsd, routeArgs)
	if qsd.Name != "" {
		p.SendQueryStatement(qsd, eqb.ParamValues, eqb.ParamFormats, formats)
	} else {
		p.SendQueryParams(query, eqb.ParamValues, qsd.ParamOIDs, eqb.ParamFormats, formats)
	}
	for i, r := range rt.reset {
		if resets[i] != nil {
			p.SendQueryStatement(resets[i], nil, nil, nil)
		} else {
			p.SendQueryParams(r, nil, nil, nil, nil)
		}
	}
	res := &pipelineResults{p: p, cs: cs, sd: qsd, left: 2 + len(rt.reset)}
	if err := p.Sync(); err != nil {
		return nil, pgconn.CommandTag{}, false, firstErr(err, p.Close())
	}
	err := readClosing(p, len(cs.closing))
	cs.closing = cs.closing[:0]
	if err != nil {
		return nil, pgconn.CommandTag{}, false, firstErr(err, res.finish())
	}
	return readRoute(res)
}

// preparedResets returns the resets (resetPath) that follow a routed
// statement inside a transaction as prepared statements of pc: parsed each
// time they made three routed statements in a transaction cost 1.18-1.20x
// the hand-qualified ones instead of 1.13-1.16x (same run). What pc lacks is
// prepared first, once per connection, in a round trip of its own, as pgx
// prepares a statement on its first use.
func preparedResets(ctx context.Context, pc *pgx.Conn, cs *connStatements, reset []string) ([maxResets]*pgconn.StatementDescription, error) {
	var out [maxResets]*pgconn.StatementDescription
	for i, r := range reset {
		sd := cs.lookup(r)
		if sd == nil {
			var err error
			if sd, err = pc.PgConn().Prepare(ctx, nameFor(r), r, nil); err != nil {
				return out, err
			}
			cs.add(sd)
		}
		out[i] = sd
	}
	return out, nil
}

// sendRoute queues the route statement: prepared (rsd named) or parsed.
func sendRoute(p *pgconn.Pipeline, rsd *pgconn.StatementDescription, args []any) {
	switch {
	case rsd.Name != "" && rsd.Fields != nil:
		p.SendQueryStatement(rsd, textParams(args), nil, nil)
	case rsd.Name != "":
		p.SendQueryPrepared(rsd.Name, textParams(args), nil, nil)
	default:
		p.SendQueryParams(rsd.SQL, textParams(args), nil, nil, nil)
	}
}

type roundErr struct {
	route bool
	err   error
}

// prepareRound syncs and reads the preparing round trip: the deallocations,
// the route statement (prepared if new, then run), the statement's
// preparation or description. What succeeded is recorded.
func prepareRound(p *pgconn.Pipeline, cs *connStatements, rsd, qsd *pgconn.StatementDescription, newR, newQ bool) *roundErr {
	fail := func(route bool, err error) *roundErr {
		cs.failed(err, nil)
		_ = p.Close()
		return &roundErr{route, err}
	}
	if err := p.Sync(); err != nil {
		return fail(false, err)
	}
	err := readClosing(p, len(cs.closing))
	cs.closing = cs.closing[:0]
	if err != nil {
		return fail(false, err)
	}
	if newR {
		res, err := p.GetResults()
		if err != nil {
			return fail(true, err)
		}
		got := res.(*pgconn.StatementDescription)
		rsd.ParamOIDs, rsd.Fields = got.ParamOIDs, got.Fields
		cs.add(rsd)
	}
	res, err := p.GetResults()
	if err == nil {
		rr, ok := res.(*pgconn.ResultReader)
		if !ok {
			return fail(true, errPipeline)
		}
		_, err = rr.Close()
	}
	if err != nil {
		return fail(true, err)
	}
	if newQ {
		res, err := p.GetResults()
		if err != nil {
			if qsd.Name != "" {
				cs.closing = append(cs.closing, qsd.Name) // in case
			}
			return fail(false, err)
		}
		got := res.(*pgconn.StatementDescription)
		qsd.ParamOIDs, qsd.Fields = got.ParamOIDs, got.Fields
		cs.add(qsd)
	}
	if _, err := p.GetResults(); err != nil { // the sync
		return fail(false, err)
	}
	if err := p.Close(); err != nil {
		return &roundErr{false, err}
	}
	return nil
}

func sendClosing(p *pgconn.Pipeline, cs *connStatements) {
	for _, name := range cs.closing {
		p.SendDeallocate(name)
	}
}

func readClosing(p *pgconn.Pipeline, n int) error {
	for i := 0; i < n; i++ {
		if _, err := p.GetResults(); err != nil {
			return err
		}
	}
	return nil
}

// binaryResults are the types pgx's database/sql driver reads in binary
// (stdlib's databaseSQLResultFormats); every other column comes as text, so
// that values convert as they do through stdlib (rows.go).
var binaryResults = map[uint32]bool{
	pgtype.BoolOID: true, pgtype.ByteaOID: true, pgtype.CIDOID: true, pgtype.DateOID: true,
	pgtype.Float4OID: true, pgtype.Float8OID: true, pgtype.Int2OID: true, pgtype.Int4OID: true,
	pgtype.Int8OID: true, pgtype.OIDOID: true, pgtype.TimestampOID: true, pgtype.TimestamptzOID: true,
	pgtype.XIDOID: true,
}

func resultFormats(fields []pgconn.FieldDescription) []int16 {
	out := make([]int16, len(fields))
	for i, f := range fields {
		if binaryResults[f.DataTypeOID] {
			out[i] = pgtype.BinaryFormatCode
		}
	}
	return out
}
