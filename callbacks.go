package tenantplugin

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// registerCallbacks puts one routing callback in front of every processor and
// one error callback behind it, as go-gorm/dbresolver does.
func (p *Plugin) registerCallbacks(db *gorm.DB) error {
	cb := db.Callback()
	for _, err := range []error{
		cb.Create().Before("*").Register("tenantplugin:route", p.route),
		cb.Query().Before("*").Register("tenantplugin:route", p.route),
		cb.Update().Before("*").Register("tenantplugin:route", p.route),
		cb.Delete().Before("*").Register("tenantplugin:route", p.route),
		cb.Row().Before("*").Register("tenantplugin:route", p.route),
		cb.Raw().Before("*").Register("tenantplugin:route", p.route),

		cb.Create().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Query().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Update().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Delete().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Row().After("*").Register("tenantplugin:errors", p.translateError),
		cb.Raw().After("*").Register("tenantplugin:errors", p.translateError),

		// With tenant roles, GORM's write transactions run under the role.
		cb.Create().After("gorm:begin_transaction").Register("tenantplugin:role", p.roleForWrite),
		cb.Update().After("gorm:begin_transaction").Register("tenantplugin:role", p.roleForWrite),
		cb.Delete().After("gorm:begin_transaction").Register("tenantplugin:role", p.roleForWrite),

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
// by the clause builders (scope.go); here it fails closed when a tenant table
// has no tenant, and sends statements that carry raw SQL through search_path.
func (p *Plugin) route(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	stmt := db.Statement
	v := valueFrom(stmt.Context)
	if v != nil && v.err != nil {
		db.AddError(v.err)
		return
	}
	if v != nil && !v.shared {
		if reason := p.notATenant(v.name); reason != "" {
			db.AddError(&NameError{Name: v.name, Reason: reason})
			return
		}
	}
	if v != nil && v.pathSet {
		// The caller's transaction already runs under this search_path
		// (the migrator and RunInTenant set it right after BEGIN).
		return
	}

	needPath := stmt.SQL.Len() > 0 // Raw, Exec: SQL text we cannot qualify
	if !needPath {
		table, plain := currentTable(stmt)
		if plain {
			if _, err := p.schemaFor(v, table); err != nil {
				db.AddError(err)
				return
			}
		} else {
			// A raw table expression such as Table("polls p"): classify by
			// the model when there is one, and route by search_path.
			if stmt.Schema != nil {
				if _, err := p.schemaFor(v, stmt.Schema.Table); err != nil {
					db.AddError(err)
					return
				}
			}
			needPath = true
		}
		if !needPath {
			needPath = hasRawTableSQL(stmt)
		}
	}
	if !needPath || v == nil {
		return
	}
	sql, args := p.routeStatement(v)
	if _, inTx := stmt.ConnPool.(gorm.TxCommitter); inTx {
		if isSavepointSQL(stmt) {
			return
		}
		if _, err := stmt.ConnPool.ExecContext(stmt.Context, sql, args...); err != nil {
			db.AddError(routeError(v, err))
		}
		return
	}
	stmt.ConnPool = &routedPool{inner: stmt.ConnPool, routeSQL: sql, routeArgs: args, v: v}
}

// translateError runs after every statement: it drops the statement's
// routing pool, turns "relation does not
// exist" for a tenant whose schema is missing into ErrUnknownTenant, and makes
// database errors name the tenant.
func (p *Plugin) translateError(db *gorm.DB) {
	// The per-statement routing pool must not outlive the statement: a
	// statement reused or cloned into another tenant's context would carry it.
	if rp, ok := db.Statement.ConnPool.(*routedPool); ok {
		db.Statement.ConnPool = rp.inner
	}
	if db.Error == nil {
		return
	}
	v := valueFrom(db.Statement.Context)
	if v == nil || v.err != nil || v.shared || v.capture {
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
		if exists, err := p.schemaExists(db.Statement.Context, v.name); err == nil && !exists {
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

// hasRawTableSQL reports whether a GORM-built statement carries raw SQL that
// may name tables: a Joins("JOIN ...") string, or a condition or selected
// expression containing a subselect. Such names cannot be qualified without
// parsing SQL, so the statement is routed by search_path instead.
func hasRawTableSQL(stmt *gorm.Statement) bool {
	for _, j := range stmt.Joins {
		if isRawJoin(stmt, j.Name) {
			return true
		}
	}
	if c, ok := stmt.Clauses["WHERE"]; ok {
		if w, ok := c.Expression.(clause.Where); ok && exprsHaveSelect(w.Exprs) {
			return true
		}
	}
	for _, s := range stmt.Selects {
		if containsSelect(s) {
			return true
		}
	}
	if c, ok := stmt.Clauses["SELECT"]; ok && c.Expression != nil {
		if exprsHaveSelect([]clause.Expression{c.Expression}) {
			return true
		}
	}
	return false
}

func isRawJoin(stmt *gorm.Statement, name string) bool {
	if stmt.Schema == nil {
		return true
	}
	if _, ok := stmt.Schema.Relationships.Relations[name]; ok {
		return false
	}
	// nested "Manager.Company"
	rels := stmt.Schema.Relationships.Relations
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			rel, ok := rels[name[start:i]]
			if !ok {
				return true
			}
			rels = rel.FieldSchema.Relationships.Relations
			start = i + 1
		}
	}
	return false
}

func exprsHaveSelect(exprs []clause.Expression) bool {
	for _, e := range exprs {
		switch x := e.(type) {
		case clause.Expr:
			if containsSelect(x.SQL) {
				return true
			}
		case clause.NamedExpr:
			if containsSelect(x.SQL) {
				return true
			}
		case clause.AndConditions:
			if exprsHaveSelect(x.Exprs) {
				return true
			}
		case clause.OrConditions:
			if exprsHaveSelect(x.Exprs) {
				return true
			}
		case clause.NotConditions:
			if exprsHaveSelect(x.Exprs) {
				return true
			}
		}
	}
	return false
}

// containsSelect reports whether s contains the word "select" in any case.
func containsSelect(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if s[i]|0x20 == 's' && s[i+1]|0x20 == 'e' && s[i+2]|0x20 == 'l' &&
			s[i+3]|0x20 == 'e' && s[i+4]|0x20 == 'c' && s[i+5]|0x20 == 't' {
			return true
		}
	}
	return false
}

// isSavepointSQL spots the SAVEPOINT statements GORM sends for nested
// transactions: they touch no table and need no search_path.
func isSavepointSQL(stmt *gorm.Statement) bool {
	s := stmt.SQL.String()
	return len(s) > 10 && (s[:10] == "SAVEPOINT " || (len(s) > 21 && s[:21] == "ROLLBACK TO SAVEPOINT") || (len(s) > 18 && s[:18] == "RELEASE SAVEPOINT "))
}
