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
	// The other clauses that can hold subqueries bind them the same way.
	wrap("GROUP BY", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if g, ok := c.Expression.(clause.GroupBy); ok {
			if having, changed := p.bindSubqueries(stmt, g.Having); changed {
				g.Having = having
				c.Expression = g
			}
		}
		buildWith(prev, c, stmt)
	})
	wrap("ORDER BY", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if o, ok := c.Expression.(clause.OrderBy); ok && o.Expression != nil {
			if e, changed := p.bindExpr(stmt, o.Expression); changed {
				o.Expression = e
				c.Expression = o
			}
		}
		buildWith(prev, c, stmt)
	})
	wrap("SET", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if set, ok := c.Expression.(clause.Set); ok {
			c.Expression = p.bindSet(stmt, set)
		}
		buildWith(prev, c, stmt)
	})
	wrap("VALUES", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if vals, ok := c.Expression.(clause.Values); ok {
			var rows [][]any
			for i, row := range vals.Values {
				if nr, changed := p.bindVars(stmt, row); changed {
					if rows == nil {
						rows = append([][]any(nil), vals.Values...)
					}
					rows[i] = nr
				}
			}
			if rows != nil {
				vals.Values = rows
				c.Expression = vals
			}
		}
		buildWith(prev, c, stmt)
	})
	wrap("ON CONFLICT", func(prev clause.ClauseBuilder, c clause.Clause, stmt *gorm.Statement) {
		if oc, ok := c.Expression.(clause.OnConflict); ok {
			oc.DoUpdates = p.bindSet(stmt, oc.DoUpdates)
			if exprs, changed := p.bindSubqueries(stmt, oc.Where.Exprs); changed {
				oc.Where = clause.Where{Exprs: exprs}
			}
			c.Expression = oc
		}
		buildWith(prev, c, stmt)
	})
}

// bindSet binds the subqueries among assigned values (a copy when any).
func (p *Plugin) bindSet(stmt *gorm.Statement, set clause.Set) clause.Set {
	var out clause.Set
	for i, a := range set {
		if v, changed := p.bindValue(stmt, a.Value); changed {
			if out == nil {
				out = append(clause.Set(nil), set...)
			}
			out[i].Value = v
		}
	}
	if out == nil {
		return set
	}
	return out
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

// unroutedSchema is written in place of a schema that could not be chosen.
// It is not a valid tenant or schema name, so a statement that somehow ran
// with it fails with "schema does not exist" instead of reading anything.
const unroutedSchema = `"tenantplugin: no tenant"`

// qualified writes `"schema"."table"` for a plain table name, or records the
// routing error (no tenant) on the statement and every statement around it,
// which then are not executed.
func (w tableWriter) qualified(b clause.Writer, table string) {
	schema, err := w.p.schemaFor(w.v, table)
	if err != nil {
		fail(w.stmt, err)
		// Should the error ever be dropped, the SQL still names no table
		// that exists: no schema can have this name.
		b.WriteString(unroutedSchema)
		b.WriteByte('.')
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
