package tenantplugin

import (
	"context"
	"reflect"

	"gorm.io/gorm"
)

type ctxKey struct{}

// tenantValue is what WithTenant and SharedOnly store in a context. It is
// immutable and validated once, so statements only read it.
type tenantValue struct {
	name   string // tenant name (= schema name); empty in shared-only mode
	quoted string // `"name"`, quoted by QuoteIdentifier
	shared bool   // SharedOnly: every table goes to the shared schema
	err    error  // validation error of name, reported by every statement
	// pathSet marks a context whose transaction (pathPool) already runs
	// under this route's search_path (set right after BEGIN by the library
	// itself), so raw statements there need no set_config of their own.
	pathSet  bool
	pathPool gorm.ConnPool
	// capture marks the capture's scratch schema: errors must not call it
	// a tenant.
	capture bool
	// isolated drops the shared schema from the search_path (a tenant's
	// migrations, see Migrator.steps).
	isolated bool
}

// label names v in errors.
func (v *tenantValue) label() string {
	if v.shared {
		return "(shared)"
	}
	if v.capture {
		return "(capture of the tenant model set)"
	}
	return v.name
}

// WithTenant returns a copy of ctx that routes GORM statements to the schema
// of tenant name, as context.WithValue derives a context. The name is
// validated here once (ValidateName); an invalid name is kept in the context
// so that every statement run with it fails with ErrInvalidTenantName before
// any SQL is built. Statements also refuse the shared schema and the
// extension schemas as tenants. WithTenant does not ask the registry whether
// the tenant is registered: it is for names the application trusts. For a
// name that arrives from outside (a job payload, a command line), use
// Plugin.ContextFor, which does; the tenanthttp middleware does for requests.
func WithTenant(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, ctxKey{}, newTenantValue(name))
}

// newTenantValue validates name once and keeps its quoted form.
func newTenantValue(name string) *tenantValue {
	v := &tenantValue{name: name}
	if err := ValidateName(name); err != nil {
		v.err = err
	} else {
		v.quoted = QuoteIdentifier(name)
	}
	return v
}

// SharedOnly returns a copy of ctx in which every statement runs against the
// shared schema only: tenant tables are not reachable, no tenant is needed.
// It is the explicit (and greppable) way for admin code to work on shared
// tables and on the library's own bookkeeping there; a missing tenant never
// falls back to the shared schema by itself.
func SharedOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, &tenantValue{shared: true})
}

// FromContext returns the tenant carried by ctx. ok is false when ctx has no
// tenant, carries an invalid name, or is a SharedOnly context.
func FromContext(ctx context.Context) (name string, ok bool) {
	v := valueFrom(ctx)
	if v == nil || v.shared || v.err != nil {
		return "", false
	}
	return v.name, true
}

func valueFrom(ctx context.Context) *tenantValue {
	if ctx == nil {
		return nil
	}
	v, _ := ctx.Value(ctxKey{}).(*tenantValue)
	return v
}

// withPathSet returns ctx marked as running inside transaction pool, whose
// search_path the library has set for v.
func withPathSet(ctx context.Context, v *tenantValue, pool gorm.ConnPool) context.Context {
	c := *v
	c.pathSet, c.pathPool = true, pool
	return context.WithValue(ctx, ctxKey{}, &c)
}

// pathSetOn reports that a statement with v's context runs on the
// transaction whose search_path the library set for v (withPathSet), and so
// needs no route of its own. The same context used on any other pool (the
// app's db, another transaction) is routed like any tenant context: that
// pool's connection has no such path (a breaker's finding: RunInTenant's
// context used on the app's db read and wrote the shared schema's
// same-named tables).
func (v *tenantValue) pathSetOn(pool gorm.ConnPool) bool {
	if !v.pathSet || pool == nil || v.pathPool == nil {
		return false
	}
	pool, set := unprepared(pool), unprepared(v.pathPool)
	if t := reflect.TypeOf(pool); t != reflect.TypeOf(set) || !t.Comparable() {
		return false
	}
	return pool == set
}

// noRoute returns ctx with any tenant routing removed: statements run exactly
// as written (used for the library's own catalog statements).
func noRoute(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, (*tenantValue)(nil))
}
