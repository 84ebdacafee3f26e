package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// registerCallbacks puts one routing callback in front of every processor and
// one error callback behind it, as go-gorm/dbresolver does.
func (p *Plugin) registerCallbacks(db *gorm.DB) error {
	cb := db.Callback()
	for _, err := range []error{
		cb.Create().Before("*").Register("tenantplugin:route", p.routeWrite),
		cb.Query().Before("*").Register("tenantplugin:route", p.route),
		cb.Update().Before("*").Register("tenantplugin:route", p.routeWrite),
		cb.Delete().Before("*").Register("tenantplugin:route", p.routeWrite),
		cb.Row().Before("*").Register("tenantplugin:route", p.route),
		cb.Raw().Before("*").Register("tenantplugin:route", p.route),

		cb.Create().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Query().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Update().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Delete().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Row().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Raw().After("*").Register("tenantplugin:errors", p.translateError),

		// The migrator captures the DDL AutoMigrate sends.
		cb.Raw().Before("gorm:raw").Register("tenantplugin:record", record),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// route runs before every statement. GORM-built statements are qualified later
// by the clause builders (clauses.go); here it fails closed when a tenant
// table has no tenant, and sends statements that carry raw SQL through
// search_path. A subquery (built inside another statement, see subquery.go)
// reports its errors and its need of search_path to the statement around it.
func (p *Plugin) route(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	stmt := db.Statement
	v := valueFrom(stmt.Context)
	if v != nil && v.err != nil {
		fail(stmt, v.err)
		return
	}
	if v != nil && !v.shared {
		if reason := p.notATenant(v.name); reason != "" {
			fail(stmt, &NameError{Name: v.name, Reason: reason})
			return
		}
	}
	if v != nil && v.pathSetOn(stmt.ConnPool) {
		// The library's transaction already runs under this search_path
		// (the migrator and RunInTenant set it right after BEGIN).
		return
	}
	needPath := stmt.SQL.Len() > 0 // Raw, Exec: SQL text we cannot qualify
	if !needPath {
		table, plain := currentTable(stmt)
		if !plain && stmt.Schema != nil {
			// A raw table expression such as Table("polls p"): classify
			// by the model.
			table, plain = stmt.Schema.Table, true
		}
		if plain {
			if _, err := p.schemaFor(v, table); err != nil {
				fail(stmt, err)
				return
			}
		}
		needPath = rawTableExpr(stmt) || needsPath(stmt)
	}
	if !needPath || v == nil {
		return
	}
	if parentOf(stmt.Context) != nil {
		p.routeLate(stmt) // a subquery: the statement around it runs
		return
	}
	if db.DryRun {
		return
	}
	p.routeByPath(db, v)
}

// routeWrite is route for create, update and delete. With tenant roles
// (WithTenantRoles) a tenant's write also runs under its role: set with the
// search_path right after GORM's BEGIN of the write's transaction (or in the
// caller's transaction, or in a transaction of its own when GORM opens none).
func (p *Plugin) routeWrite(db *gorm.DB) {
	p.route(db)
	if !p.roles || db.Error != nil || db.DryRun || parentOf(db.Statement.Context) != nil {
		return
	}
	if v := valueFrom(db.Statement.Context); v != nil && v.err == nil && !v.shared && !v.pathSetOn(db.Statement.ConnPool) {
		p.routeByPath(db, v)
	}
}

// routeByPath makes db's statement run under v's search_path (and role):
// inside a transaction the route statement travels with the statement
// (routedTx; on pools that are not pgx's it runs now, before it); outside
// one the statement gets a transaction of its own (routedPool).
func (p *Plugin) routeByPath(db *gorm.DB, v *tenantValue) {
	stmt := db.Statement
	switch stmt.ConnPool.(type) {
	case *routedPool, *routedTx:
		return
	}
	sql, args := p.routeStatement(v)
	if _, inTx := stmt.ConnPool.(gorm.TxCommitter); inTx {
		if isSavepointSQL(stmt) {
			return
		}
		// The library's transaction for v (RunInTenant, a seed, a
		// migration) already runs under v's path: a route, and the resets
		// after it, would end that path for the statements after it (a
		// breaker's finding).
		if owned, err := p.checkOwner(stmt.ConnPool, v); owned || err != nil {
			if err != nil {
				db.AddError(err)
			}
			return
		}
		if t := pinnedOf(stmt.ConnPool); t != nil && t.pc != nil {
			stmt.ConnPool = &routedTx{pinnedTx: t, orig: stmt.ConnPool, rt: routing{v: v, sql: sql, args: args, reset: resetFor(sql)}, p: p}
			return
		}
		if _, err := stmt.ConnPool.ExecContext(stmt.Context, sql, args...); err != nil {
			db.AddError(routeError(v, err))
		}
		return
	}
	stmt.ConnPool = &routedPool{inner: stmt.ConnPool, rt: routing{v: v, sql: sql, args: args}, p: p}
}

// rawTableExpr reports a table expression the builders cannot qualify
// (Table("links l"), Table("other.polls")) that may name a relation: all of
// them, except a parenthesized subquery whose raw text names none (its
// subqueries decide when they are built).
func rawTableExpr(stmt *gorm.Statement) bool {
	if _, plain := currentTable(stmt); plain || stmt.TableExpr == nil {
		return false
	}
	e := stmt.TableExpr
	sql := strings.TrimSpace(e.SQL)
	if !strings.HasPrefix(sql, "(") {
		return true
	}
	return namesRelation(sql) || rawVars(e.Vars)
}

// translateError runs after every statement: it drops the statement's
// routing pool, turns "relation does not
// exist" for a tenant whose schema is missing into ErrUnknownTenant, and makes
// database errors name the tenant.
func (p *Plugin) translateError(db *gorm.DB) {
	// The per-statement routing pool must not outlive the statement: a
	// statement reused or cloned into another tenant's context would carry it.
	switch rp := db.Statement.ConnPool.(type) {
	case *routedPool:
		db.Statement.ConnPool = rp.inner
	case *routedTx:
		db.Statement.ConnPool = rp.orig
	}
	if db.Error == nil {
		return
	}
	v := valueFrom(db.Statement.Context)
	if v == nil || v.err != nil || v.shared || v.capture || v.pathSetOn(db.Statement.ConnPool) {
		// Inside the library's own transactions (migrations, creation,
		// RunInTenant) the schema was checked when the path was set, and
		// the caller names the tenant: a missing table is a missing table.
		return
	}
	var te *TenantError
	var ue *UnknownTenantError
	if errors.As(db.Error, &te) || errors.As(db.Error, &ue) {
		return
	}
	var pgErr *pgconn.PgError
	if !errors.As(db.Error, &pgErr) {
		return
	}
	if pgErr.Code == "42P01" || pgErr.Code == "3F000" { // undefined_table, invalid_schema_name
		exists := p.schemaExists
		switch pool := unprepared(db.Statement.ConnPool); pool.(type) {
		case *sql.Conn:
			// db.Connection: no transaction, so the held connection can
			// answer itself.
			exists = func(ctx context.Context, name string) (bool, error) {
				return schemaExistsOn(ctx, pool, name)
			}
		case gorm.TxCommitter:
			exists = p.schemaExistsBesides // the transaction is aborted
		}
		if exists, err := exists(db.Statement.Context, v.name); err == nil && !exists {
			db.Error = &UnknownTenantError{Tenant: v.name, Err: db.Error}
			return
		}
	}
	db.Error = &TenantError{Tenant: v.name, Err: db.Error}
}

// currentTable returns the statement's main table and whether it is a plain
// table name that the clause builders can qualify. It is not plain when the
// app gave a raw expression (Table("polls p"), Table("(?) AS t", sub)) or an
// explicitly qualified name (Table("other.polls"), TableName "other.polls").
func currentTable(stmt *gorm.Statement) (string, bool) {
	if stmt.TableExpr == nil {
		return stmt.Table, stmt.Table != ""
	}
	e := stmt.TableExpr
	t := stmt.Table
	// Table("polls") stores the quoted name `"polls"` as the expression.
	if len(e.Vars) == 0 && len(e.SQL) == len(t)+2 && e.SQL[0] == '"' && e.SQL[len(e.SQL)-1] == '"' && e.SQL[1:len(e.SQL)-1] == t {
		return t, t != ""
	}
	return t, false
}

// isSavepointSQL spots a lone savepoint statement: SAVEPOINT name, ROLLBACK
// [WORK | TRANSACTION] TO [SAVEPOINT] name, RELEASE [SAVEPOINT] name, in any
// case (GORM sends them for nested transactions; people write them by
// hand). They touch no table and need no search_path, so they run as
// written, unrouted: routed, a savepoint would be taken between the route
// and the resets after it, and rolling back to it would bring a tenant's
// path back (a breaker's finding). Inside a routed script they are refused
// (txControlIn).
func isSavepointSQL(stmt *gorm.Statement) bool {
	s := strings.TrimSpace(stmt.SQL.String())
	s = strings.TrimSpace(strings.TrimSuffix(s, ";"))
	sc := scriptScanner{src: s}
	var buf [6]string
	words := buf[:0]
	for sc.pos < len(s) {
		start := sc.pos
		switch sc.next() {
		case tokSpace, tokComment:
		case tokWord, tokQuoted:
			if len(words) == len(buf) {
				return false
			}
			words = append(words, strings.ToUpper(s[start:sc.pos]))
		default:
			return false
		}
	}
	name := func(rest []string) bool {
		if len(rest) > 0 && rest[0] == "SAVEPOINT" {
			rest = rest[1:]
		}
		return len(rest) == 1 && rest[0][0] != '\''
	}
	switch {
	case len(words) == 2 && words[0] == "SAVEPOINT":
		return name(words[1:])
	case len(words) >= 2 && words[0] == "RELEASE":
		return name(words[1:])
	case len(words) >= 3 && words[0] == "ROLLBACK":
		rest := words[1:]
		if rest[0] == "WORK" || rest[0] == "TRANSACTION" {
			rest = rest[1:]
		}
		return len(rest) >= 2 && rest[0] == "TO" && name(rest[1:])
	}
	return false
}
