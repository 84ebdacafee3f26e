package tenantplugin

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Raw SQL fragments. GORM writes the table names of the statements it builds
// through the clause builders, which qualify them. A fragment the app wrote
// itself (a Joins("JOIN links ...") string, Table("links l"), a condition
// "id IN (SELECT ...)", a db.Raw subquery) can name a relation that no
// builder sees; such a statement is routed by search_path instead.
//
// needsPath decides from the statement being built, before it is built:
// every clause, every expression in it and the values of those expressions.
// Subqueries given as values are decided when GORM builds them (their
// scopes run then), and route the statement around them (routeLate): the
// decision covers the whole tree at any depth. A fragment is taken to name
// a relation when it contains, in any case, one of the words of
// relationWords; this is a superset test, so a false positive only costs
// the search_path route, never isolation. Expression types the walk does
// not know are taken as raw.

// relationWords are the words that let a fragment name a relation: a
// subquery (SELECT, TABLE name), a cast or function that looks a relation
// or sequence up by name through the search_path.
var relationWords = []string{"select", "table", "regclass", "nextval", "currval", "setval"}

// namesRelation reports whether s contains one of relationWords, in any
// case.
func namesRelation(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c != 's' && c != 't' && c != 'r' && c != 'n' && c != 'c' {
			continue
		}
		for _, w := range relationWords {
			if hasWordAt(s, i, w) {
				return true
			}
		}
	}
	return false
}

func hasWordAt(s string, i int, w string) bool {
	if len(s)-i < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		if s[i+j]|0x20 != w[j] {
			return false
		}
	}
	return true
}

// needsPath reports whether a GORM-built statement carries raw SQL that
// may name a relation (see above).
func needsPath(stmt *gorm.Statement) bool {
	for _, j := range stmt.Joins {
		if isRawJoin(stmt, j.Name) || rawVars(j.Conds) {
			return true
		}
		if j.Expression != nil && rawExpr(j.Expression) {
			return true
		}
	}
	for _, s := range stmt.Selects {
		if namesRelation(s) {
			return true
		}
	}
	for name, c := range stmt.Clauses {
		switch name {
		case "INSERT", "UPDATE", "DELETE", "LIMIT", "FOR", "RETURNING":
			continue // table names the builders qualify, or no names
		}
		if c.Expression != nil && rawExpr(c.Expression) {
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

func rawExprs(exprs []clause.Expression) bool {
	for _, e := range exprs {
		if rawExpr(e) {
			return true
		}
	}
	return false
}

// rawExpr walks one expression of a clause.
func rawExpr(e clause.Expression) bool {
	switch x := e.(type) {
	case nil:
		return false
	case clause.Expr:
		return namesRelation(x.SQL) || rawVars(x.Vars)
	case clause.NamedExpr:
		return namesRelation(x.SQL) || rawVars(x.Vars)
	case clause.Where:
		return rawExprs(x.Exprs)
	case clause.AndConditions:
		return rawExprs(x.Exprs)
	case clause.OrConditions:
		return rawExprs(x.Exprs)
	case clause.NotConditions:
		return rawExprs(x.Exprs)
	case clause.CommaExpression:
		return rawExprs(x.Exprs)
	case clause.Eq:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.Neq:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.Gt:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.Gte:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.Lt:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.Lte:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.Like:
		return rawColumnValue(x.Column) || rawVar(x.Value)
	case clause.IN:
		return rawColumnValue(x.Column) || rawVars(x.Values)
	case clause.Select:
		return rawColumns(x.Columns) || (x.Expression != nil && rawExpr(x.Expression))
	case clause.GroupBy:
		return rawColumns(x.Columns) || rawExprs(x.Having)
	case clause.OrderBy:
		for _, c := range x.Columns {
			if rawColumn(c.Column) {
				return true
			}
		}
		return x.Expression != nil && rawExpr(x.Expression)
	case clause.Set:
		return rawSet(x)
	case clause.Values:
		if rawColumns(x.Columns) {
			return true
		}
		for _, row := range x.Values {
			if rawVars(row) {
				return true
			}
		}
		return false
	case clause.OnConflict:
		return rawSet(x.DoUpdates) || rawExprs(x.Where.Exprs) || rawExprs(x.TargetWhere.Exprs)
	case clause.From:
		for _, t := range x.Tables {
			if t.Raw {
				return true
			}
		}
		for _, j := range x.Joins {
			if j.Table.Raw || (j.Expression != nil && rawExpr(j.Expression)) || rawExprs(j.ON.Exprs) {
				return true
			}
		}
		return false
	case clause.Locking, clause.Returning, clause.Limit, clause.Insert, clause.Update, clause.Delete:
		return false
	}
	// A subquery chain of GORM's generics API is decided when it is built.
	return !isChain(e)
}

func rawSet(set clause.Set) bool {
	for _, a := range set {
		if rawColumn(a.Column) || rawVar(a.Value) {
			return true
		}
	}
	return false
}

func rawColumns(cols []clause.Column) bool {
	for _, c := range cols {
		if rawColumn(c) {
			return true
		}
	}
	return false
}

func rawColumn(c clause.Column) bool { return c.Raw && namesRelation(c.Name) }

// rawColumnValue: a condition's column is a clause.Column or a string, the
// latter written as given.
func rawColumnValue(c any) bool {
	switch x := c.(type) {
	case clause.Column:
		return rawColumn(x)
	case string:
		return namesRelation(x)
	case clause.Expression:
		return rawExpr(x)
	}
	return false
}

func rawVars(vars []any) bool {
	for _, v := range vars {
		if rawVar(v) {
			return true
		}
	}
	return false
}

// rawVar: a bound value is data, except a clause expression (written into
// the SQL) and a subquery (decided when it is built).
func rawVar(v any) bool {
	switch x := v.(type) {
	case nil, string, int, int64, uint, bool:
		return false
	case *gorm.DB:
		return x != nil && x.Statement != nil && x.Statement.SQL.Len() > 0
	case []any:
		return rawVars(x)
	case clause.Column:
		return rawColumn(x)
	case clause.Table:
		return x.Raw
	case clause.Expression:
		return rawExpr(x)
	}
	return false
}

// txControlIn returns the first transaction-control command (BEGIN, START,
// COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION, SAVEPOINT, RELEASE)
// that begins a statement of s, or "". The route statement runs before the
// first statement, so such a command anywhere ends the transaction the
// route's set_config(..., true) lives in (or, ROLLBACK TO SAVEPOINT, undoes
// it): the statements after it would run on another path, a BEGIN would
// leave a transaction open on a pooled connection, and inside the caller's
// transaction it would end theirs. A savepoint taken between the route and
// the resets that follow it inside a transaction (pipeline.go) would bring
// the tenant's path back when rolled back to, so SAVEPOINT and RELEASE
// count too (lone savepoint statements are not routed: isSavepointSQL).
// Statements are found as psql finds them (splitScript: strings, E-prefixed
// strings, quoted identifiers, dollar quotes, comments, BEGIN ATOMIC
// bodies).
func txControlIn(s string) string {
	if strings.IndexByte(s, ';') < 0 {
		return txControlWord(s)
	}
	for _, st := range splitScript(s) {
		if w := txControlWord(st.SQL); w != "" {
			return w
		}
	}
	return ""
}

// txControlWord returns the transaction-control command statement s
// begins with (see txControlIn), or "".
func txControlWord(s string) string {
	sc := scriptScanner{src: s}
	first := ""
	for sc.pos < len(s) {
		start := sc.pos
		switch sc.next() {
		case tokSpace, tokComment:
			continue
		case tokWord:
			w := strings.ToUpper(s[start:sc.pos])
			if first == "PREPARE" {
				if w == "TRANSACTION" {
					return "PREPARE TRANSACTION"
				}
				return ""
			}
			switch first = w; w {
			case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE":
				return w
			case "PREPARE":
				continue
			}
			return ""
		default:
			return ""
		}
	}
	return ""
}

// checkScript refuses a routed raw statement or script that would end the
// transaction its search_path lives in (txControlIn), before anything is
// sent. Savepoints (SAVEPOINT, RELEASE, and a lone ROLLBACK TO SAVEPOINT)
// are not routed at all (isSavepointSQL), so they never come here.
func checkScript(v *tenantValue, query string) error {
	if w := txControlIn(query); w != "" {
		return fmt.Errorf("tenantplugin: tenant %q: raw SQL routed by search_path may not contain %s: it would end the transaction that holds the tenant's search_path, and what follows would run without it; "+
			"use db.Transaction (and tx.SavePoint / tx.RollbackTo) instead", v.label(), w)
	}
	return nil
}
