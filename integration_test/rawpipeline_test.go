package integration_test

// Issue 15: a routed raw statement costs the round trips of the same
// statement hand-qualified and unrouted, outside and inside a transaction,
// on postgres.Open and on tenantplugin.Open; its rows stream; the connection
// it used goes back to the pool clean.

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// countingConn counts the client's writes: pgx writes each round trip's
// messages (a pipeline included) in one write.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) { c.writes.Add(1); return c.Conn.Write(b) }

// openCounting opens GORM on the test database the design card's way
// (postgres.New over pgx's defaults, which is postgres.Open) or through
// tenantplugin.Open, counting the client's writes.
func openCounting(t *testing.T, viaOpen bool, dsnParams string, prepareStmt bool, writes *atomic.Int64, configure ...func(*pgx.ConnConfig)) *gorm.DB {
	t.Helper()
	dial := func(cfg *pgx.ConnConfig) {
		for _, f := range configure {
			f(cfg)
		}
		d := &net.Dialer{}
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, writes}, nil
		}
	}
	var dialector gorm.Dialector
	if viaOpen {
		dialector = tenantplugin.Open(server.URL+dsnParams, tenantplugin.WithPgxConfig(dial))
	} else {
		cfg, err := pgx.ParseConfig(server.URL + dsnParams)
		require.NoError(t, err)
		dial(cfg)
		dialector = postgres.New(postgres.Config{Conn: stdlib.OpenDB(*cfg)})
	}
	db, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard, PrepareStmt: prepareStmt})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(1)
	t.Cleanup(func() { sqlDB.Close() })
	return db
}

// pipelineConfigs are the pools a routed raw statement runs on differently:
// prepared statements on pgx's defaults (the design card's postgres.Open)
// and on tenantplugin.Open, parsed unnamed when the DSN names a mode without
// prepared statements (as behind PgBouncer before 1.21).
var pipelineConfigs = []struct {
	name        string
	viaOpen     bool
	dsnParams   string
	prepareStmt bool // GORM's PrepareStmt mode
}{
	{"postgres.Open", false, "", false},
	{"tenantplugin.Open", true, "", false},
	{"tenantplugin.Open exec mode", true, "&default_query_exec_mode=exec", false},
	{"postgres.Open cache_describe", false, "&default_query_exec_mode=cache_describe", false},
	{"postgres.Open PrepareStmt", false, "", true},
}

// pluginTenants registers the test plugin on db (a shared schema of its
// own, migrated) and creates n tenants, dropped at cleanup.
func pluginTenants(t *testing.T, db *gorm.DB, prefix string, n int) []string {
	t.Helper()
	p := testPlugin(fmt.Sprintf("%s_%d", prefix, sharedN.Add(1)))
	require.NoError(t, db.Use(p))
	m := p.Migrator()
	ctx := context.Background()
	require.NoError(t, m.MigrateShared(ctx))
	var out []string
	for i := 0; i < n; i++ {
		tn := fmt.Sprintf("%s%d", prefix, tenantN.Add(1))
		require.NoError(t, m.CreateTenant(ctx, tn))
		t.Cleanup(func() { _ = m.DropTenant(context.Background(), tn) })
		out = append(out, tn)
	}
	return out
}

func TestRoutedRawSQLCostsTheRoundTripsOfUnroutedSQL(t *testing.T) {
	for _, c := range pipelineConfigs {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int64
			db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes)
			tn := pluginTenants(t, db, "rt", 1)[0]
			ctx := context.Background()
			tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
			require.NoError(t, tdb.Create(&Poll{Question: "q", Owner: tn}).Error)
			qualified := "SELECT owner FROM " + tenantplugin.QuoteIdentifier(tn) + ".polls WHERE id = ?"

			// measure returns the client writes of fn, after one warm-up run
			// (prepared statements, caches).
			measure := func(fn func() error) int64 {
				require.NoError(t, fn())
				before := writes.Load()
				require.NoError(t, fn())
				return writes.Load() - before
			}
			var owner string
			routed := measure(func() error { return tdb.Raw("SELECT owner FROM polls WHERE id = ?", 1).Scan(&owner).Error })
			assert.Equal(t, tn, owner)
			unrouted := measure(func() error { return db.Raw(qualified, 1).Scan(&owner).Error })
			assert.Equal(t, int64(1), routed, "routed raw query outside a transaction")
			assert.Equal(t, unrouted, routed)

			routedExec := measure(func() error { return tdb.Exec("UPDATE polls SET question = ? WHERE id = ?", "x", 1).Error })
			assert.Equal(t, int64(1), routedExec, "routed raw exec outside a transaction")

			inTx := func(stmt string, db *gorm.DB) func() error {
				return func() error {
					return db.Transaction(func(tx *gorm.DB) error {
						for i := 0; i < 3; i++ {
							if err := tx.Raw(stmt, 1).Scan(&owner).Error; err != nil {
								return err
							}
						}
						return nil
					})
				}
			}
			routedTx := measure(inTx("SELECT owner FROM polls WHERE id = ?", tdb))
			unroutedTx := measure(inTx(qualified, db))
			assert.Equal(t, int64(5), routedTx, "BEGIN, three statements, COMMIT")
			assert.Equal(t, unroutedTx, routedTx)
			assert.Equal(t, tn, owner)
		})
	}
}

// recordingTracer records the statements pgx's tracer hook reports.
type recordingTracer struct {
	mu   sync.Mutex
	sqls []string
}

func (r *recordingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	r.sqls = append(r.sqls, d.SQL)
	r.mu.Unlock()
	return ctx
}

func (r *recordingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns the recorded statements that contain one of subs, and
// forgets all.
func (r *recordingTracer) take(subs ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.sqls {
		for _, s := range subs {
			if strings.Contains(q, s) {
				out = append(out, q)
				break
			}
		}
	}
	r.sqls = nil
	return out
}

// TestRouteStatementsTracedAndReset: pgx's tracer (ConnConfig.Tracer) sees
// the route statement and the statement of every routed raw statement, in
// and out of transactions, on every pool configuration; inside a
// transaction the route ends with its statement: what runs next sees the
// connection's default search_path and role again (a breaker's finding: a
// raw statement without a tenant read the previous tenant's table). The
// route statement stays one prepared statement of the connection, always
// run under the default path (PostgreSQL re-plans a prepared statement
// that runs under another search_path than before).
func TestRouteStatementsTracedAndReset(t *testing.T) {
	const stmt = "SELECT owner FROM polls WHERE id = ?"
	for _, c := range pipelineConfigs {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int64
			tr := &recordingTracer{}
			db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes, func(cfg *pgx.ConnConfig) { cfg.Tracer = tr })
			tns := pluginTenants(t, db, "trace", 2)
			ctx := context.Background()
			for _, tn := range tns {
				require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, tn)).Create(&Poll{Question: "q", Owner: tn}).Error)
			}
			var defaultPath string
			require.NoError(t, db.Raw("SELECT current_setting('search_path')").Scan(&defaultPath).Error)
			const route, query = "set_config('search_path'", "FROM polls WHERE"
			for range 2 { // the second time on prepared statements
				tr.take()
				var owner string
				tdb := db.WithContext(tenantplugin.WithTenant(ctx, tns[0]))
				require.NoError(t, tdb.Raw(stmt, 1).Scan(&owner).Error)
				require.Equal(t, tns[0], owner)
				outside := tr.take(route, query)
				require.Len(t, outside, 2, "route and statement outside a transaction: %q", outside)
				assert.Contains(t, outside[0], route)
				assert.Contains(t, outside[1], query)

				var owners, paths []string
				require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
					for _, tn := range []string{tns[0], tns[0], tns[1], tns[0]} {
						if err := tx.WithContext(tenantplugin.WithTenant(ctx, tn)).Raw(stmt, 1).Scan(&owner).Error; err != nil {
							return err
						}
						owners = append(owners, owner)
						var path string
						if err := tx.Raw("SELECT current_setting('search_path')").Scan(&path).Error; err != nil {
							return err
						}
						paths = append(paths, path)
					}
					return nil
				}))
				assert.Equal(t, []string{tns[0], tns[0], tns[1], tns[0]}, owners, "each statement reads its own tenant's table")
				assert.Equal(t, []string{defaultPath, defaultPath, defaultPath, defaultPath}, paths, "after each routed statement, the default path")
				inside := tr.take(route, query)
				require.Len(t, inside, 8, "a route statement before each statement: %q", inside)
				for i := 0; i < 8; i += 2 {
					assert.Equal(t, outside[0], inside[i], "one route statement")
					assert.Contains(t, inside[i+1], query)
				}
			}
			var prepared int64
			require.NoError(t, db.Raw("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%set_config(''search_path''%' AND name LIKE 'tenantplugin_%'").Scan(&prepared).Error)
			if c.dsnParams == "" {
				assert.Equal(t, int64(1), prepared, "the route statement is a prepared statement of the connection")
			} else {
				assert.Equal(t, int64(0), prepared, "no prepared statements on a pool configured without them")
			}
		})
	}
}

// TestRoutedRawRowsStream: reading 200,000 routed rows through Rows() holds
// a bounded number of them; the connection goes back to the pool, with no
// transaction and no tenant path, when they are closed or read to the end.
func TestRoutedRawRowsStream(t *testing.T) {
	e := newEnv(t, 1)
	tn := e.tenant("stream")
	require.NoError(t, e.as(tn).Exec(
		"INSERT INTO polls (question, owner) SELECT 'question number ' || g, 'owner' FROM generate_series(1, 200000) g").Error)
	sqlDB, err := e.db.DB()
	require.NoError(t, err)

	rows, err := e.as(tn).Raw("SELECT id, question FROM polls ORDER BY id").Rows()
	require.NoError(t, err)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	start := ms.HeapAlloc
	var peak uint64
	n := 0
	for rows.Next() {
		var id int64
		var q string
		require.NoError(t, rows.Scan(&id, &q))
		n++
		if n%50000 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 200000, n)
	growth := int64(peak) - int64(start)
	t.Logf("heap growth while reading 200,000 rows: %d kB", growth/1024)
	assert.Less(t, growth, int64(4<<20), "rows are streamed, not held")
	assert.Equal(t, 0, sqlDB.Stats().InUse, "read to the end: the connection is back")
	require.NoError(t, rows.Close())
	assertCleanConnection(t, sqlDB)
}

// assertCleanConnection checks the pool's one connection: no transaction,
// the default search_path.
func assertCleanConnection(t *testing.T, sqlDB *sql.DB) {
	t.Helper()
	conn, err := sqlDB.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	var status byte
	require.NoError(t, conn.Raw(func(dc any) error {
		status = dc.(*stdlib.Conn).Conn().PgConn().TxStatus()
		return nil
	}))
	assert.Equal(t, byte('I'), status, "no transaction left open")
	var path string
	require.NoError(t, conn.QueryRowContext(context.Background(), "SHOW search_path").Scan(&path))
	assert.Equal(t, `"$user", public`, path)
}

// TestRoutedRowsLikeDatabaseSQL: rows the caller does not close hold their
// connection, as with database/sql; closing them early or ending their
// context gives it back clean.
func TestRoutedRowsLikeDatabaseSQL(t *testing.T) {
	e := newEnv(t, 1)
	tn := e.tenant("rowsclose")
	require.NoError(t, e.as(tn).Exec("INSERT INTO polls (question, owner) SELECT 'q', 'o' FROM generate_series(1, 5000)").Error)
	sqlDB, err := e.db.DB()
	require.NoError(t, err)

	rows, err := e.as(tn).Raw("SELECT id FROM polls").Rows()
	require.NoError(t, err)
	require.True(t, rows.Next())
	assert.Equal(t, 1, sqlDB.Stats().InUse, "open rows hold their connection")
	require.NoError(t, rows.Close())
	assert.Equal(t, 0, sqlDB.Stats().InUse)
	assertCleanConnection(t, sqlDB)

	ctx, cancel := context.WithCancel(tenantplugin.WithTenant(context.Background(), tn))
	rows, err = e.db.WithContext(ctx).Raw("SELECT id FROM polls").Rows()
	require.NoError(t, err)
	require.True(t, rows.Next())
	cancel()
	require.Eventually(t, func() bool { return sqlDB.Stats().InUse == 0 }, 5*time.Second, 10*time.Millisecond,
		"an ended context closes the rows and gives the connection back")
	assertCleanConnection(t, sqlDB)

	// In the caller's transaction, rows still open at COMMIT are closed
	// first, as a *sql.Tx does.
	require.NoError(t, e.as(tn).Transaction(func(tx *gorm.DB) error {
		_, err := tx.Raw("SELECT id FROM polls").Rows()
		return err
	}))
	assert.Equal(t, 0, sqlDB.Stats().InUse)
	assertCleanConnection(t, sqlDB)
}

// TestRoutedValuesMatchPgxStdlib: values read through a routed raw query
// are the values pgx's database/sql driver gives for the same query.
func TestRoutedValuesMatchPgxStdlib(t *testing.T) {
	for _, c := range pipelineConfigs {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int64
			db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes)
			checkValuesMatch(t, db, pluginTenants(t, db, "vals", 1)[0])
		})
	}
}

func checkValuesMatch(t *testing.T, db *gorm.DB, tn string) {
	const q = `SELECT true, false, '\xdeadbeef'::bytea, 42::int2, 42::int4, 42::int8, 1.5::float4, 2.25::float8,
		12.345::numeric(10,3), 'text'::text, 'vc'::varchar(10), 'c'::char(3), '2024-02-29'::date, 'infinity'::date,
		'2024-02-29 12:34:56.789'::timestamp, '2024-02-29 12:34:56.789+02'::timestamptz, '12:34'::time,
		'1 day 2 hours'::interval, '{"a": [1, 2]}'::json, '{"a": 1}'::jsonb, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid,
		'{1,2,3}'::int[], '{a,b}'::text[], 42::oid, '10.0.0.1'::inet, NULL::text, $1::text, $2::int8`
	read := func(rows *sql.Rows) ([]any, []string) {
		defer rows.Close()
		cols, err := rows.ColumnTypes()
		require.NoError(t, err)
		require.True(t, rows.Next())
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		var types []string
		for _, c := range cols {
			types = append(types, fmt.Sprintf("%s/%v", c.DatabaseTypeName(), c.ScanType()))
		}
		return vals, types
	}
	sqlDB, err := db.DB()
	require.NoError(t, err)
	// With arguments (a prepared statement), and without (the texts of
	// statements without arguments go the same way, inside a transaction too).
	noArgs := strings.NewReplacer("$1::text", "'arg'::text", "$2::int8", "7::int8").Replace(q)
	for _, c := range []struct {
		name string
		q    string
		args []any
	}{{"args", q, []any{"arg", 7}}, {"no args", noArgs, nil}} {
		routedRows, err := db.WithContext(tenantplugin.WithTenant(context.Background(), tn)).Raw(c.q, c.args...).Rows()
		require.NoError(t, err)
		got, gotTypes := read(routedRows)
		plainRows, err := sqlDB.Query(c.q, c.args...)
		require.NoError(t, err)
		want, wantTypes := read(plainRows)
		require.Equal(t, len(want), len(got))
		for i := range want {
			assert.Equal(t, want[i], got[i], "%s: column %d (%s)", c.name, i+1, wantTypes[i])
		}
		assert.Equal(t, wantTypes, gotTypes, c.name)
	}
}

// TestRoutedPreparedStatementsAreBounded: a connection keeps at most 256
// routed raw texts as prepared statements; older ones are deallocated, and
// run again when used again.
func TestRoutedPreparedStatementsAreBounded(t *testing.T) {
	var writes atomic.Int64
	db := openCounting(t, false, "", false, &writes)
	tn := pluginTenants(t, db, "bound", 1)[0]
	ctx := context.Background()
	tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
	for i := 0; i < 400; i++ {
		var n int64
		require.NoError(t, tdb.Raw(fmt.Sprintf("SELECT count(*) + %d FROM polls WHERE id > ?", i), 0).Scan(&n).Error)
		require.Equal(t, int64(i), n)
	}
	count := func() int64 {
		var n int64
		require.NoError(t, db.Raw("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'tenantplugin_%'").Scan(&n).Error)
		return n
	}
	n := count()
	t.Logf("prepared routed statements on the connection after 400 texts: %d", n)
	assert.LessOrEqual(t, n, int64(256))
	assert.GreaterOrEqual(t, n, int64(200))
	var first int64
	require.NoError(t, tdb.Raw("SELECT count(*) + 0 FROM polls WHERE id > ?", 0).Scan(&first).Error)
	assert.Equal(t, int64(0), first, "an evicted text runs again")
	assert.LessOrEqual(t, count(), int64(256))
}

// TestRoutedRowsCancelledInsideTransactions: contexts ending while routed
// rows stream inside transactions, from 8 goroutines on 2 connections (a
// breaker's finding: database/sql's rollback on context end raced the
// routed rows on the same pgx connection, and crashed the process). The
// pool comes back clean.
func TestRoutedRowsCancelledInsideTransactions(t *testing.T) {
	e := newEnv(t, 2)
	tn := e.tenant("cancel")
	e.seed(tn, e.plan())
	sqlDB, err := e.db.DB()
	require.NoError(t, err)
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	var done atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithTimeout(e.ctx(tn), time.Duration(200+(g*397+i*131)%3000)*time.Microsecond)
				_ = e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					rows, err := tx.Raw("SELECT owner FROM polls, generate_series(1, 500)").Rows()
					if err != nil {
						return err
					}
					rows.Next()
					rows.Close()
					return tx.Raw("SELECT owner FROM polls WHERE id > ?", 0).Scan(&[]string{}).Error
				})
				cancel()
				done.Add(1)
			}
		}(g)
	}
	wg.Wait()
	t.Logf("transactions run, most cut by their context: %d", done.Load())
	require.Eventually(t, func() bool { return sqlDB.Stats().InUse == 0 }, 5*time.Second, 10*time.Millisecond)
	var owners []string
	require.NoError(t, e.as(tn).Raw("SELECT DISTINCT owner FROM polls").Scan(&owners).Error)
	assert.Equal(t, []string{tn}, owners)
	for i := 0; i < 2; i++ {
		assertCleanConnection(t, sqlDB)
	}
}

// TestRoutedScriptsStayRouted: a raw script that merely starts with
// SAVEPOINT is routed like any other (only GORM's own savepoint statements
// skip the route), and a script that would end its transaction midway, so
// that the statements after it ran without the tenant's path, is refused
// before anything is sent (both found by a breaker).
func TestRoutedScriptsStayRouted(t *testing.T) {
	e := newEnv(t, 1)
	tn := e.tenant("script")
	e.seed(tn, e.plan())
	var got []string
	require.NoError(t, e.as(tn).Transaction(func(tx *gorm.DB) error {
		// Lone savepoint statements, written by hand in any case, run
		// unrouted; a savepoint inside a routed script is refused below
		// (rolled back to, it would bring the tenant's path back after the
		// resets: a breaker's finding).
		for _, q := range []string{"savepoint before_fix", "UPDATE polls SET question = 'fixed'", "Rollback To before_fix", "UPDATE polls SET question = 'fixed again'", "release savepoint before_fix"} {
			if err := tx.Exec(q).Error; err != nil {
				return err
			}
		}
		var path string
		if err := tx.WithContext(context.Background()).Raw("SELECT current_setting('search_path')").Scan(&path).Error; err != nil {
			return err
		}
		assert.NotContains(t, path, tn, "the path after the savepoints")
		return tx.Raw("SELECT DISTINCT question FROM polls").Scan(&got).Error
	}))
	assert.Equal(t, []string{"fixed again"}, got)

	for _, script := range []string{
		"BEGIN; UPDATE polls SET question = 'one'; COMMIT; UPDATE polls SET question = 'two'",
		"UPDATE polls SET question = 'one'; ROLLBACK; UPDATE polls SET question = 'two'",
		"UPDATE polls SET question = 'one';\n-- then\nend; UPDATE polls SET question = 'two'",
		// First statements too: the route runs before them (a breaker's
		// finding: the rest ran unrouted, or a BEGIN left the pooled
		// connection in a transaction and the write was lost).
		"COMMIT; UPDATE polls SET question = 'two'",
		"rollback; UPDATE polls SET question = 'two'",
		"ABORT; UPDATE polls SET question = 'two'",
		"/* x */ BEGIN; UPDATE polls SET question = 'two'",
		"COMMIT",
		"SAVEPOINT before_fix; UPDATE polls SET question = 'two'",
		"UPDATE polls SET question = 'two'; RELEASE SAVEPOINT x",
		`SELECT E'\''; COMMIT; UPDATE polls SET question = 'two'; SELECT 1 --'`,
		"SELECT 1 AS x$a$; COMMIT; UPDATE polls SET question = 'two'; SELECT 1 AS y$a$",
	} {
		err := e.as(tn).Exec(script).Error
		require.Error(t, err, script)
		assert.Contains(t, err.Error(), "may not contain")
		assert.Contains(t, err.Error(), tn)
		err = e.as(tn).Transaction(func(tx *gorm.DB) error { return tx.Exec(script).Error })
		require.Error(t, err, script)
	}
	got = nil
	require.NoError(t, e.as(tn).Raw("SELECT DISTINCT question FROM polls").Scan(&got).Error)
	assert.Equal(t, []string{"fixed again"}, got, "nothing of the refused scripts ran")
	// A function body's BEGIN ... END is no transaction control.
	require.NoError(t, e.as(tn).Exec("CREATE FUNCTION poll_count() RETURNS bigint AS $$ BEGIN RETURN (SELECT count(*) FROM polls); END $$ LANGUAGE plpgsql; SELECT poll_count()").Error)
}

// TestRoutedStatementsUnderCancellation: 16 goroutines on 3 connections mix
// routed raw reads, streamed rows, scripts, raw-fragment statements and
// transactions for two tenants, most cut short by their context, on each
// pool configuration. Nothing reads the other tenant's rows, and every
// connection comes back to the pool, clean (a breaker's finding: rows whose
// context ended before database/sql took them held their connection).
func TestRoutedStatementsUnderCancellation(t *testing.T) {
	for _, c := range pipelineConfigs {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int64
			db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes)
			sqlDB, err := db.DB()
			require.NoError(t, err)
			sqlDB.SetMaxOpenConns(3)
			tenants := pluginTenants(t, db, "cancel", 2)
			for _, tn := range tenants {
				require.NoError(t, db.WithContext(tenantplugin.WithTenant(context.Background(), tn)).Create(&Poll{Question: "q", Owner: tn}).Error)
			}
			var wrong atomic.Int64
			check := func(tn string, got []string) {
				for _, s := range got {
					if s != tn {
						wrong.Add(1)
					}
				}
			}
			deadline := time.Now().Add(1500 * time.Millisecond)
			var wg sync.WaitGroup
			for g := 0; g < 16; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; time.Now().Before(deadline); i++ {
						tn := tenants[(g+i)%2]
						d := time.Duration(100+(g*7919+i*104729)%3000) * time.Microsecond
						if i%3 == 0 {
							d = 5 * time.Second
						}
						ctx, cancel := context.WithTimeout(tenantplugin.WithTenant(context.Background(), tn), d)
						tdb := db.WithContext(ctx)
						var got []string
						switch i % 5 {
						case 0:
							if tdb.Raw("SELECT owner FROM polls WHERE id > ?", 0).Scan(&got).Error == nil {
								check(tn, got)
							}
						case 1:
							if rows, err := tdb.Raw("SELECT owner FROM polls, generate_series(1, 300)").Rows(); err == nil {
								for rows.Next() {
									var s string
									if rows.Scan(&s) == nil {
										check(tn, []string{s})
									}
								}
								rows.Close()
							}
						case 2:
							if tdb.Raw("SELECT owner FROM polls; ").Scan(&got).Error == nil {
								check(tn, got)
							}
						case 3:
							var ps []Poll
							if tdb.Where("id IN (SELECT id FROM polls)").Find(&ps).Error == nil {
								for _, p := range ps {
									check(tn, []string{p.Owner})
								}
							}
						case 4:
							_ = tdb.Transaction(func(tx *gorm.DB) error {
								rows, err := tx.Raw("SELECT owner FROM polls, generate_series(1, 200)").Rows()
								if err != nil {
									return err
								}
								rows.Next()
								rows.Close()
								if err := tx.Raw("SELECT owner FROM polls WHERE id > ?", 0).Scan(&got).Error; err != nil {
									return err
								}
								check(tn, got)
								return nil
							})
						}
						cancel()
					}
				}(g)
			}
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()
			select {
			case <-finished:
			case <-time.After(60 * time.Second):
				t.Fatalf("goroutines stuck waiting for connections: %d of 3 in use", sqlDB.Stats().InUse)
			}
			assert.Zero(t, wrong.Load(), "rows of the other tenant")
			require.Eventually(t, func() bool { return sqlDB.Stats().InUse == 0 }, 10*time.Second, 10*time.Millisecond)
			for i := 0; i < 3; i++ {
				assertCleanConnection(t, sqlDB)
			}
		})
	}
}

// TestTransactionWithEndedContext: a transaction begun with a context that
// already ended fails with the context's error and holds no connection, as
// with database/sql (transactions run on a connection held for them).
func TestTransactionWithEndedContext(t *testing.T) {
	e := newEnv(t, 1)
	tn := e.tenant("ended")
	sqlDB, err := e.db.DB()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(e.ctx(tn))
	cancel()
	ran := false
	err = e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { ran = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, ran)
	assert.Equal(t, 0, sqlDB.Stats().InUse)
	assertCleanConnection(t, sqlDB)
}

// TestRoutedSQLRecoversAfterDeallocateAll: DEALLOCATE ALL and DISCARD ALL
// drop the connection's prepared statements, the library's route and raw
// statements included (a breaker's finding: every later routed statement on
// that connection failed). The next routed statement outside a transaction
// succeeds (the failed attempt ran nothing and is retried); inside a
// transaction at most the first transaction fails, as with pgx's own cache.
func TestRoutedSQLRecoversAfterDeallocateAll(t *testing.T) {
	for _, c := range pipelineConfigs {
		for _, reset := range []string{"DEALLOCATE ALL", "DISCARD ALL"} {
			t.Run(c.name+"/"+reset, func(t *testing.T) {
				var writes atomic.Int64
				db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes)
				tns := pluginTenants(t, db, "dealloc", 2)
				ctx := context.Background()
				for _, tn := range tns {
					require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, tn)).Create(&Poll{Question: "q", Owner: tn}).Error)
				}
				owner := func(db *gorm.DB, tn string) (string, error) {
					var o string
					err := db.WithContext(tenantplugin.WithTenant(ctx, tn)).Raw("SELECT owner FROM polls WHERE id = ?", 1).Scan(&o).Error
					return o, err
				}
				inTx := func() error {
					return db.Transaction(func(tx *gorm.DB) error {
						for _, tn := range []string{tns[0], tns[0], tns[1]} {
							o, err := owner(tx, tn)
							if err != nil {
								return err
							}
							if o != tn {
								return fmt.Errorf("tenant %s read %q", tn, o)
							}
						}
						return nil
					})
				}
				for _, tn := range tns { // warm: route and statement prepared
					o, err := owner(db, tn)
					require.NoError(t, err)
					require.Equal(t, tn, o)
				}
				require.NoError(t, inTx())

				// A text of its own each time: pgx's cache (and GORM's
				// PrepareStmt) would keep the statement that deallocated itself.
				require.NoError(t, db.Exec(reset+" /* 1 */").Error)
				for i := 0; i < 3; i++ {
					o, err := owner(db, tns[i%2])
					require.NoError(t, err, "routed statement %d outside a transaction after %s", i, reset)
					assert.Equal(t, tns[i%2], o)
				}

				require.NoError(t, db.Exec(reset+" /* 2 */").Error)
				failed := 0
				for i := 0; i < 4; i++ {
					if err := inTx(); err != nil {
						failed++
						t.Logf("transaction %d after %s: %v", i, reset, err)
					}
				}
				assert.LessOrEqual(t, failed, 1, "transactions failing after %s", reset)
			})
		}
	}
}

// TestStatementTimeoutIsNotBlamedOnTheRoute: a routed statement whose
// context ends while it runs fails with the context's error, and the
// message does not blame the route statement, which succeeded (a breaker's
// finding: "set search_path: timeout").
func TestStatementTimeoutIsNotBlamedOnTheRoute(t *testing.T) {
	for _, c := range pipelineConfigs[:3] {
		for _, inTx := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inTx=%v", c.name, inTx), func(t *testing.T) {
				var writes atomic.Int64
				db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes)
				tn := pluginTenants(t, db, "timeout", 1)[0]
				tctx := tenantplugin.WithTenant(context.Background(), tn)
				require.NoError(t, db.WithContext(tctx).Exec("SELECT 1 FROM polls").Error) // warm
				ctx, cancel := context.WithTimeout(tctx, 100*time.Millisecond)
				defer cancel()
				const q = "SELECT count(*), pg_sleep(0.5) FROM polls"
				var err error
				if inTx {
					err = db.Transaction(func(tx *gorm.DB) error {
						return tx.WithContext(ctx).Raw(q).Scan(&[]map[string]any{}).Error
					})
				} else {
					err = db.WithContext(ctx).Raw(q).Scan(&[]map[string]any{}).Error
				}
				require.Error(t, err)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.NotContains(t, err.Error(), "set search_path")
				assert.Contains(t, err.Error(), tn)
			})
		}
	}
}
