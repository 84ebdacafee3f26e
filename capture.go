package tenantplugin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// ddlPlan is the DDL GORM's AutoMigrate runs to build the tenant tables in an
// empty schema, captured once per Migrator by running AutoMigrate in a
// scratch schema inside a transaction that is rolled back. Replaying it
// builds a new tenant without AutoMigrate's catalog inspection, in one round
// trip. fingerprint hashes the schema shape and the migration IDs: a tenant
// migrated under the same fingerprint needs no work.
type ddlPlan struct {
	// stmts run in order; consecutive statements without arguments are
	// joined into one script (one round trip over the simple protocol),
	// except on Citus, where each runs on its own (see captureDDL).
	stmts       []capStm
	fingerprint string
}

type capStm struct {
	sql  string
	vars []any
}

type recorder struct {
	mu    sync.Mutex
	stmts []capStm
}

type recorderKey struct{}

func (m *Migrator) ddl(ctx context.Context) (*ddlPlan, error) {
	if err := m.p.registered(); err != nil {
		return nil, err
	}
	m.planOnce.Lock()
	defer m.planOnce.Unlock()
	if m.plan != nil {
		return m.plan, nil
	}
	if err := m.checkMigrationIDs(); err != nil {
		return nil, err
	}
	citus, err := m.p.onCitus(ctx, m.p.rootPool)
	if err != nil {
		return nil, err
	}
	if citus {
		if err := m.p.citusTenantChecks(ctx); err != nil {
			return nil, err
		}
	}
	plan, err := m.captureDDL(ctx, citus)
	if err != nil {
		return nil, fmt.Errorf("tenantplugin: capture of the tenant model set: %w", err)
	}
	m.plan = plan
	return plan, nil
}

// captureDDL runs AutoMigrate of the tenant models in a scratch schema and
// records the DDL. The replayed form depends on the server: on plain
// PostgreSQL consecutive statements without arguments are joined into one
// script (one round trip); on a Citus coordinator (citus) every statement is
// sent on its own, because Citus forwards a multi-statement string to the
// worker holding the tenant's schema, which refuses one containing
// CREATE INDEX or ALTER TABLE ("cannot insert multiple commands into a
// prepared statement"). Citus's own work per CREATE TABLE (creating the shard
// on a worker) dwarfs the round trips saved by joining.
func (m *Migrator) captureDDL(ctx context.Context, citus bool) (*ddlPlan, error) {
	p := m.p
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	scratch := "tenantplugin_capture_" + hex.EncodeToString(rnd[:])
	v := newTenantValue(scratch)
	v.capture = true
	rec := &recorder{}
	var shape []string
	err := p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if citus {
			// A plain scratch schema: a distributed one would take a
			// colocation id, which Citus never gives back (its sequence
			// ignores the rollback) and from which it places the next
			// distributed schema (id modulo the number of workers), so every
			// process that creates one tenant would put it on the same worker.
			if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, citusShardingOff); err != nil {
				return err
			}
		}
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "CREATE SCHEMA "+v.quoted); err != nil {
			return err
		}
		if err := p.setPath(tx, v); err != nil {
			return err
		}
		defer p.own(tx, v)()
		stx := p.migrationSession(tx.WithContext(withPathSet(ctx, v, tx.Statement.ConnPool)), false)
		if len(m.preMigrations) > 0 {
			if err := p.setMigrationPath(tx, v, true); err != nil {
				return err
			}
			if err := runGormigrate(stx, m.preMigrations); err != nil {
				return fmt.Errorf("pre-migrations: %w", err)
			}
			if err := p.setMigrationPath(tx, v, false); err != nil {
				return err
			}
		}
		cctx := context.WithValue(withPathSet(ctx, v, tx.Statement.ConnPool), recorderKey{}, rec)
		if err := p.autoMigrateTenant(p.migrationSession(tx.WithContext(cctx), false)); err != nil {
			return p.captureFailure(rec, err)
		}
		var err error
		if shape, err = catalogShape(tx, scratch); err != nil {
			return err
		}
		return errCaptured // roll back: the scratch schema never exists outside
	})
	if !errors.Is(err, errCaptured) {
		return nil, err
	}
	plan := &ddlPlan{}
	var script strings.Builder
	for _, s := range rec.stmts {
		if strings.Contains(s.sql, scratch) {
			return nil, fmt.Errorf("captured DDL names the scratch schema: %s", s.sql)
		}
		if citus {
			plan.stmts = append(plan.stmts, s)
			continue
		}
		if len(s.vars) == 0 {
			script.WriteString(s.sql)
			script.WriteString(";\n")
			continue
		}
		// Keep order: flush the script before a statement with arguments.
		if script.Len() > 0 {
			plan.stmts = append(plan.stmts, capStm{sql: script.String()})
			script.Reset()
		}
		plan.stmts = append(plan.stmts, s)
	}
	if script.Len() > 0 {
		plan.stmts = append(plan.stmts, capStm{sql: script.String()})
	}
	// The fingerprint hashes the shape of the schema AutoMigrate built, read
	// back from the catalog, not GORM's statements: GORM walks maps while
	// migrating, so its statement order (and whether a foreign key comes
	// inline or as ALTER TABLE) varies from run to run.
	// It has two halves: the model shape, then the migration list. When only
	// the list changed (a new migration), AutoMigrate has nothing to do and
	// only the migrations run.
	hs := sha256.New()
	hs.Write([]byte("tenantplugin/v1\n"))
	for _, l := range shape {
		hs.Write([]byte(strings.ReplaceAll(l, scratch, "$S") + "\n"))
	}
	hm := sha256.New()
	for _, mig := range m.preMigrations { // in order: order matters here
		fmt.Fprintf(hm, "pre %s\n", mig.ID)
	}
	for _, mig := range m.migrations {
		fmt.Fprintf(hm, "migration %s\n", mig.ID)
	}
	plan.fingerprint = hex.EncodeToString(hs.Sum(nil))[:16] + hex.EncodeToString(hm.Sum(nil))[:16]
	return plan, nil
}

// checkMigrationIDs refuses an ID used twice across the pre-migrations and
// the migrations: both lists share one bookkeeping table per tenant.
func (m *Migrator) checkMigrationIDs() error {
	seen := map[string]bool{}
	for _, mig := range append(append([]*gormigrate.Migration{}, m.preMigrations...), m.migrations...) {
		if seen[mig.ID] {
			return fmt.Errorf("tenantplugin: migration ID %q is used twice (WithPreMigrations and WithMigrations share one table per tenant)", mig.ID)
		}
		seen[mig.ID] = true
	}
	return nil
}

// captureFailure says which model (and column, when PostgreSQL names a
// type) the capture's AutoMigrate failed on: the statement that failed is
// the last one recorded.
func (p *Plugin) captureFailure(rec *recorder, err error) error {
	rec.mu.Lock()
	var last string
	if len(rec.stmts) > 0 {
		last = rec.stmts[len(rec.stmts)-1].sql
	}
	rec.mu.Unlock()
	table := tableOfDDL(last)
	where := ""
	if s := p.layout.schemaOf(table); s != nil {
		where = fmt.Sprintf("model %s (table %s)", s.Name, table)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42704" { // undefined_object: a type
			if typ, ok := quotedIn(pgErr.Message); ok {
				for _, f := range s.Fields {
					if strings.EqualFold(string(f.DataType), typ) || strings.HasPrefix(strings.ToLower(string(f.DataType)), strings.ToLower(typ)+"(") {
						where += fmt.Sprintf(", field %s (column %s)", f.Name, f.DBName)
						break
					}
				}
				return fmt.Errorf("%s: %w (create the type in a pre-migration, WithPreMigrations, or in the shared schema)", where, err)
			}
		}
	} else if table != "" {
		where = "table " + table
	}
	if where == "" {
		return err
	}
	return fmt.Errorf("%s: %w", where, err)
}

// tableOfDDL returns the table a CREATE TABLE, ALTER TABLE or CREATE INDEX
// statement GORM built is about.
func tableOfDDL(stmt string) string {
	for _, kw := range []string{"CREATE TABLE ", "ALTER TABLE ", " ON "} {
		if i := strings.Index(stmt, kw); i >= 0 {
			if name, ok := quotedIn(stmt[i+len(kw):]); ok {
				return name
			}
		}
	}
	return ""
}

// quotedIn returns the first double-quoted name in s.
func quotedIn(s string) (string, bool) {
	i := strings.IndexByte(s, '"')
	if i < 0 {
		return "", false
	}
	j := strings.IndexByte(s[i+1:], '"')
	if j < 0 {
		return "", false
	}
	return s[i+1 : i+1+j], true
}

// unprepared returns the transaction (or pool) under GORM's PrepareStmt
// wrapper: a script of several statements cannot be a prepared statement,
// and pgx's per-query options (a QueryExecMode as first argument) would
// reach a database/sql prepared statement as an argument. It also tells
// whether two pools are the same transaction: tx.Session(&gorm.Session{
// PrepareStmt: true}) wraps one anew (pathSetOn, own).
func unprepared(pool gorm.ConnPool) gorm.ConnPool {
	switch p := pool.(type) {
	case *gorm.PreparedStmtTX:
		if p.Tx != nil {
			return p.Tx
		}
	case *gorm.PreparedStmtDB:
		if p.ConnPool != nil {
			return p.ConnPool
		}
	}
	return pool
}

// sameShape reports whether a recorded fingerprint has this plan's model
// shape (its first half).
func (plan *ddlPlan) sameShape(recorded string) bool {
	return len(recorded) == len(plan.fingerprint) && recorded[:16] == plan.fingerprint[:16]
}

// replay runs the captured DDL on tx, whose search_path is the new tenant's.
func (plan *ddlPlan) replay(tx *gorm.DB) error {
	conn := unprepared(tx.Statement.ConnPool)
	for _, s := range plan.stmts {
		if _, err := conn.ExecContext(tx.Statement.Context, s.sql, s.vars...); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	return nil
}

// record keeps a raw statement of a capture run.
func record(db *gorm.DB) {
	rec, ok := db.Statement.Context.Value(recorderKey{}).(*recorder)
	if !ok {
		return
	}
	rec.mu.Lock()
	rec.stmts = append(rec.stmts, capStm{sql: db.Statement.SQL.String(), vars: append([]any(nil), db.Statement.Vars...)})
	rec.mu.Unlock()
}

// catalogShape describes the tables of schema as sorted text lines: columns
// (position, type, nullability, default), indexes, constraints, sequences.
func catalogShape(tx *gorm.DB, schema string) ([]string, error) {
	const q = `
SELECT 'col ' || c.relname || ' ' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1
UNION ALL
SELECT 'con ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1
UNION ALL
SELECT 'seq ' || c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind = 'S'
UNION ALL
SELECT 'typ ' || t.typname || ' ' || t.typtype::text
       || coalesce(' ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                             FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), '')
       || CASE WHEN t.typbasetype <> 0 THEN ' ' || format_type(t.typbasetype, t.typtypmod) ELSE '' END
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = $1 AND t.typtype IN ('e', 'd', 'r', 'm')
ORDER BY 1`
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, q, schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
