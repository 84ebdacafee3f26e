package tenantplugin

import (
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The scope: GORM writes every table name of a statement it builds through a
// few clauses (FROM with its JOINs, INSERT INTO, UPDATE). The plugin wraps the
// builders of those clauses so that each table name is written qualified with
// the schema the statement's context selects: `"thor"."polls"`. Nothing is
// stored on the statement, so a statement cloned into another tenant's
// context is qualified anew. WHERE is wrapped too, to hand the statement's
// tenant to subqueries built without a context.

func (p *Plugin) installClauseBuilders(db *gorm.DB) {
	wrap := func(name string, build func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement)) {
		prev := db.ClauseBuilders[name]
		db.ClauseBuilders[name] = func(c clause.Clause, b clause.Builder) {
			stmt, ok := b.(*gorm.Statement)
			if !ok {
				buildWith(prev, c, b)
				return
			}
			build(prev, c, stmt)
		}
	}
	wrap("FROM", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if from, ok := c.Expression.(clause.From); ok {
			c.Expression = routedFrom{p: p, stmt: stmt, v: valueFrom(stmt.Context), from: from}
		}
		buildWith(prev, c, stmt)
	})
	wrap("INSERT", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if ins, ok := c.Expression.(clause.Insert); ok {
			c.Expression = routedInsert{p: p, stmt: stmt, v: valueFrom(stmt.Context), ins: ins}
		}
		buildWith(prev, c, stmt)
	})
	wrap("UPDATE", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if up, ok := c.Expression.(clause.Update); ok {
			c.Expression = routedUpdate{p: p, stmt: stmt, v: valueFrom(stmt.Context), up: up}
		}
		buildWith(prev, c, stmt)
	})
	wrap("SELECT", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		// Select("(?) AS n", sub) stores the clause.Expr itself as the
		// clause's expression (clause.Select.MergeClause).
		if c.Expression != nil {
			if e, changed := p.bindExpr(stmt, c.Expression); changed {
				c.Expression = e
			}
		}
		buildWith(prev, c, stmt)
	})
	wrap("WHERE", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if w, ok := c.Expression.(clause.Where); ok {
			if exprs, changed := p.bindSubqueries(stmt, w.Exprs); changed {
				c.Expression = clause.Where{Exprs: exprs}
			}
		}
		buildWith(prev, c, stmt)
	})
}

func buildWith(prev clause.ClauseBuilder, c clause.Clause, b clause.Builder) {
	if prev != nil {
		prev(c, b)
		return
	}
	c.Build(b)
}

// tableWriter writes table references of one statement.
type tableWriter struct {
	p    *Plugin
	stmt *gorm.Statement
	v    *tenantValue
}

// qualified writes `"schema"."table"` for a plain table name, or records the
// routing error (no tenant) on the statement, which then is not executed.
func (w tableWriter) qualified(b clause.Writer, table string) {
	schema, err := w.p.schemaFor(w.v, table)
	if err != nil {
		w.stmt.AddError(err)
		// Write the bare name so the (never executed) SQL stays readable.
		b.WriteString(w.p.layout.quote(table))
		return
	}
	b.WriteString(schema)
	b.WriteByte('.')
	b.WriteString(w.p.layout.quote(table))
}

func (w tableWriter) current(b clause.Builder) {
	if table, plain := currentTable(w.stmt); plain {
		w.qualified(b, table)
		return
	}
	// A raw table expression, such as Table("(?) AS t", subquery): its
	// subqueries get the statement's tenant like those of WHERE.
	if e := w.stmt.TableExpr; e != nil {
		if vars, changed := w.p.bindVars(w.stmt, e.Vars); changed {
			bound := *e
			bound.Vars = vars
			bound.Build(b)
			return
		}
	}
	b.WriteQuoted(clause.Table{Name: clause.CurrentTable})
}

// table writes a clause.Table: plain names are qualified; raw, current and
// explicitly qualified ("schema.table") names are written as GORM would.
func (w tableWriter) table(b clause.Builder, t clause.Table) {
	switch {
	case t.Name == clause.CurrentTable:
		w.current(b)
		if t.Alias != "" {
			b.WriteByte(' ')
			b.WriteQuoted(t.Alias)
		}
	case t.Raw || strings.IndexByte(t.Name, '.') >= 0:
		b.WriteQuoted(t)
	default:
		w.qualified(b, t.Name)
		if t.Alias != "" {
			b.WriteByte(' ')
			b.WriteString(QuoteIdentifier(t.Alias))
		}
	}
}

type routedFrom struct {
	p    *Plugin
	stmt *gorm.Statement
	v    *tenantValue
	from clause.From
}

// Build mirrors clause.From.Build with qualified tables and joins.
func (r routedFrom) Build(b clause.Builder) {
	w := tableWriter{p: r.p, stmt: r.stmt, v: r.v}
	if len(r.from.Tables) > 0 {
		for i, t := range r.from.Tables {
			if i > 0 {
				b.WriteByte(',')
			}
			w.table(b, t)
		}
	} else {
		w.current(b)
	}
	for _, j := range r.from.Joins {
		b.WriteByte(' ')
		if j.Expression != nil {
			if e, changed := r.p.bindExpr(r.stmt, j.Expression); changed {
				j.Expression = e
			}
			j.Build(b)
			continue
		}
		// Mirrors clause.Join.Build.
		if j.Type != "" {
			b.WriteString(string(j.Type))
			b.WriteByte(' ')
		}
		b.WriteString("JOIN ")
		w.table(b, j.Table)
		if len(j.ON.Exprs) > 0 {
			b.WriteString(" ON ")
			j.ON.Build(b)
		} else if len(j.Using) > 0 {
			b.WriteString(" USING (")
			for i, c := range j.Using {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteQuoted(c)
			}
			b.WriteByte(')')
		}
	}
}

type routedInsert struct {
	p    *Plugin
	stmt *gorm.Statement
	v    *tenantValue
	ins  clause.Insert
}

// Build mirrors clause.Insert.Build with a qualified table.
func (r routedInsert) Build(b clause.Builder) {
	if r.ins.Modifier != "" {
		b.WriteString(r.ins.Modifier)
		b.WriteByte(' ')
	}
	b.WriteString("INTO ")
	w := tableWriter{p: r.p, stmt: r.stmt, v: r.v}
	if r.ins.Table.Name == "" {
		w.current(b)
	} else {
		w.table(b, r.ins.Table)
	}
}

type routedUpdate struct {
	p    *Plugin
	stmt *gorm.Statement
	v    *tenantValue
	up   clause.Update
}

// Build mirrors clause.Update.Build with a qualified table.
func (r routedUpdate) Build(b clause.Builder) {
	if r.up.Modifier != "" {
		b.WriteString(r.up.Modifier)
		b.WriteByte(' ')
	}
	w := tableWriter{p: r.p, stmt: r.stmt, v: r.v}
	if r.up.Table.Name == "" {
		w.current(b)
	} else {
		w.table(b, r.up.Table)
	}
}

// bindSubqueries gives subqueries (a *gorm.DB passed as a condition value)
// that were built without a context the context of the statement that embeds
// them, so that db.WithContext(ctx).Where("id IN (?)", db.Model(&Choice{}))
// reads the same tenant. A subquery bound to another tenant is an error
// (ErrCrossTenant). The clause itself is never modified: a changed copy is
// returned.
func (p *Plugin) bindSubqueries(stmt *gorm.Statement, exprs []clause.Expression) ([]clause.Expression, bool) {
	var out []clause.Expression
	for i, e := range exprs {
		ne, changed := p.bindExpr(stmt, e)
		if changed && out == nil {
			out = make([]clause.Expression, len(exprs))
			copy(out, exprs[:i])
		}
		if out != nil {
			out[i] = ne
		}
	}
	return out, out != nil
}

func (p *Plugin) bindExpr(stmt *gorm.Statement, e clause.Expression) (clause.Expression, bool) {
	switch x := e.(type) {
	case clause.Expr:
		if vars, ok := p.bindVars(stmt, x.Vars); ok {
			x.Vars = vars
			return x, true
		}
	case clause.NamedExpr:
		if vars, ok := p.bindVars(stmt, x.Vars); ok {
			x.Vars = vars
			return x, true
		}
	case clause.IN:
		if vars, ok := p.bindVars(stmt, x.Values); ok {
			x.Values = vars
			return x, true
		}
	case clause.AndConditions:
		if exprs, ok := p.bindSubqueries(stmt, x.Exprs); ok {
			return clause.AndConditions{Exprs: exprs}, true
		}
	case clause.OrConditions:
		if exprs, ok := p.bindSubqueries(stmt, x.Exprs); ok {
			return clause.OrConditions{Exprs: exprs}, true
		}
	case clause.NotConditions:
		if exprs, ok := p.bindSubqueries(stmt, x.Exprs); ok {
			return clause.NotConditions{Exprs: exprs}, true
		}
	}
	return e, false
}

func (p *Plugin) bindVars(stmt *gorm.Statement, vars []any) ([]any, bool) {
	var out []any
	for i, v := range vars {
		sub, ok := v.(*gorm.DB)
		if !ok || sub == nil || sub.Statement == nil {
			continue
		}
		outer := valueFrom(stmt.Context)
		inner := valueFrom(sub.Statement.Context)
		switch {
		case inner == nil && outer != nil:
			if out == nil {
				out = make([]any, len(vars))
				copy(out, vars)
			}
			out[i] = sub.WithContext(stmt.Context)
		case inner != nil && outer != nil && (inner.name != outer.name || inner.shared != outer.shared):
			stmt.AddError(ErrCrossTenant)
		}
	}
	return out, out != nil
}
