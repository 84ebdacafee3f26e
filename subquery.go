package tenantplugin

import (
	"context"
	"reflect"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Subqueries. A *gorm.DB, or a chain of GORM's generics API (gorm.G[T]),
// given as a value anywhere in a statement (a condition, a selected
// expression, a table expression, a join, HAVING, ORDER BY, SET, VALUES) is
// built by GORM while its embedding statement is built, by running the
// subquery's own query callbacks in DryRun mode. Before that happens, the
// clause builders (clauses.go) bind each subquery:
//
//   - it gets the embedding statement's tenant when it has none of its own
//     (generics chains never have one: GORM builds them with
//     context.Background()); a subquery bound to another tenant is an error
//     (ErrCrossTenant);
//   - its context links to the embedding statement (parentKey), so that an
//     error routing the subquery (ErrNoTenant, say), which GORM drops, is
//     added to every statement around it and the outermost one fails before
//     anything is sent; and so that a subquery carrying raw SQL fragments
//     routes the outermost statement by search_path (routeLate), since
//     that is the statement that runs.

type parentKey struct{}

// parentOf returns the statement a subquery's context says it is embedded
// in, or nil.
func parentOf(ctx context.Context) *gorm.Statement {
	if ctx == nil {
		return nil
	}
	s, _ := ctx.Value(parentKey{}).(*gorm.Statement)
	return s
}

// fail records err on stmt and on every statement it is embedded in.
func fail(stmt *gorm.Statement, err error) {
	stmt.AddError(err)
	for parent := parentOf(stmt.Context); parent != nil; parent = parentOf(parent.Context) {
		parent.AddError(err)
	}
}

// outermost returns the statement that will run: stmt itself, or the
// statement its chain of subqueries is embedded in.
func outermost(stmt *gorm.Statement) *gorm.Statement {
	for parent := parentOf(stmt.Context); parent != nil; parent = parentOf(parent.Context) {
		stmt = parent
	}
	return stmt
}

// routeLate routes the statement that will run, the outermost one around
// stmt, by search_path: a subquery found raw SQL while it was being built.
func (p *Plugin) routeLate(stmt *gorm.Statement) {
	root := outermost(stmt)
	if root.DB == nil || root.DB.DryRun {
		return
	}
	v := valueFrom(root.Context)
	if v == nil || v.err != nil || v.pathSetOn(root.ConnPool) {
		return
	}
	p.routeByPath(root.DB, v)
}

// bindSubqueries binds the subqueries in exprs (see bindExpr). The clause
// itself is never modified: a changed copy is returned.
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

// bindExpr binds the subqueries among the values of expression e.
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
	case clause.Eq:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
			return x, true
		}
	case clause.Neq:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
			return x, true
		}
	case clause.Gt:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
			return x, true
		}
	case clause.Gte:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
			return x, true
		}
	case clause.Lt:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
			return x, true
		}
	case clause.Lte:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
			return x, true
		}
	case clause.Like:
		if v, ok := p.bindValue(stmt, x.Value); ok {
			x.Value = v
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
	case clause.CommaExpression:
		if exprs, ok := p.bindSubqueries(stmt, x.Exprs); ok {
			return clause.CommaExpression{Exprs: exprs}, true
		}
	default:
		if isChain(e) {
			return p.bindChain(stmt, e), true
		}
	}
	return e, false
}

// bindVars binds the subqueries among vars; a changed copy is returned.
func (p *Plugin) bindVars(stmt *gorm.Statement, vars []any) ([]any, bool) {
	var out []any
	for i, v := range vars {
		nv, changed := p.bindValue(stmt, v)
		if changed && out == nil {
			out = make([]any, len(vars))
			copy(out, vars)
		}
		if out != nil {
			out[i] = nv
		}
	}
	return out, out != nil
}

// bindValue binds one value when it is a subquery, or holds subqueries.
func (p *Plugin) bindValue(stmt *gorm.Statement, v any) (any, bool) {
	switch x := v.(type) {
	case nil, string, int, int64, uint, bool:
		return v, false
	case *gorm.DB:
		if x == nil || x.Statement == nil {
			return v, false
		}
		return p.bindDB(stmt, x), true
	case []any:
		return p.bindVars(stmt, x)
	case clause.Expression:
		return p.bindExpr(stmt, x)
	}
	return v, false
}

// bindDB binds a *gorm.DB subquery to stmt.
func (p *Plugin) bindDB(stmt *gorm.Statement, sub *gorm.DB) *gorm.DB {
	outer := valueFrom(stmt.Context)
	inner := valueFrom(sub.Statement.Context)
	ctx := sub.Statement.Context
	switch {
	case inner == nil:
		ctx = stmt.Context
	case outer != nil && (inner.name != outer.name || inner.shared != outer.shared):
		fail(stmt, ErrCrossTenant)
	}
	if sub.Statement.SQL.Len() > 0 {
		// db.Raw(...) as a subquery: GORM pastes its SQL without running
		// its callbacks. Raw SQL names tables only through search_path.
		p.routeLate(stmt)
	}
	return sub.WithContext(context.WithValue(ctx, parentKey{}, stmt))
}

// chainScopes caches, per type, whether a value is a generics chain
// (gorm.ChainInterface[T]): it builds as a clause.Expression and has
// Scopes(...func(*gorm.Statement)).
var chainScopes sync.Map // reflect.Type -> bool

var scopeFuncType = reflect.TypeOf((func(*gorm.Statement))(nil))

func isChain(e any) bool {
	t := reflect.TypeOf(e)
	if t == nil {
		return false
	}
	if ok, found := chainScopes.Load(t); found {
		return ok.(bool)
	}
	m, ok := t.MethodByName("Scopes")
	ok = ok && m.Type.NumIn() == 2 && m.Type.IsVariadic() && m.Type.In(1).Elem() == scopeFuncType && m.Type.NumOut() == 1
	chainScopes.Store(t, ok)
	return ok
}

// bindChain returns the generics chain e with a scope that gives the
// statement GORM builds from it stmt's context and a link to stmt. GORM
// applies the chain's scopes to a new session with context.Background(),
// so a scope is the one place the context can be set.
func (p *Plugin) bindChain(stmt *gorm.Statement, e clause.Expression) clause.Expression {
	ctx := context.WithValue(stmt.Context, parentKey{}, stmt)
	scope := func(s *gorm.Statement) { s.Context = ctx }
	out := reflect.ValueOf(e).MethodByName("Scopes").Call([]reflect.Value{reflect.ValueOf(scope)})
	if bound, ok := out[0].Interface().(clause.Expression); ok {
		return bound
	}
	return e
}
