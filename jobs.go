package tenantplugin

import (
	"context"
	"errors"

	"gorm.io/gorm"
)

// Work outside requests: jobs, commands and scripts, for one tenant or all.

// RunInTenant runs fn in one transaction for tenant name: GORM-built and raw
// statements on the *gorm.DB it receives go to that tenant, with the
// search_path set once, right after BEGIN (so a rolled-back savepoint cannot
// undo it), in the same statement that checks the tenant is registered and
// its schema exists. A name that is not registered, or whose schema is
// missing, gives ErrUnknownTenant and fn does not run; the shared schema or
// an invalid name gives ErrInvalidTenantName. Other errors come wrapped in a
// *TenantError naming the tenant.
func (p *Plugin) RunInTenant(ctx context.Context, name string, fn func(tx *gorm.DB) error) error {
	if err := p.registered(); err != nil {
		return err
	}
	if err := p.checkTenantName(name); err != nil {
		return err
	}
	v := newTenantValue(name)
	err := p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		sql, args := p.registeredRouteStatement(v)
		res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, sql, args...)
		if err != nil {
			return p.registryMissing(routeError(v, err))
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return notRegistered(name)
		}
		defer p.own(tx, v)()
		return fn(tx.WithContext(withPathSet(ctx, v, tx.Statement.ConnPool)))
	})
	var ue *UnknownTenantError
	var te *TenantError
	if err != nil && !errors.As(err, &ue) && !errors.As(err, &te) {
		err = &TenantError{Tenant: name, Err: err}
	}
	return err
}

// RunInTenants runs fn with RunInTenant for each of names (every registered
// tenant when names is nil), at most concurrency at a time (0: the
// migrator's default), and reports each tenant as done, failed or skipped.
// One tenant's failure does not stop the others; the error, a *RunError,
// wraps each failure.
func (p *Plugin) RunInTenants(ctx context.Context, names []string, concurrency int, fn func(tx *gorm.DB) error) (*Report, error) {
	if err := p.registered(); err != nil {
		return nil, err
	}
	m := p.Migrator(WithConcurrency(concurrency))
	if names == nil {
		var err error
		if names, err = m.Tenants(ctx); err != nil {
			return nil, err
		}
	}
	return m.run(ctx, "run", names, func(ctx context.Context, name string) (State, error) {
		if err := p.RunInTenant(ctx, name, fn); err != nil {
			return StateFailed, err
		}
		return StateDone, nil
	})
}

// ContextFor checks a tenant name that arrives from outside a request (a
// job payload, a command-line argument, a message) and returns ctx carrying
// it. Serialize the tenant name with a job; call ContextFor where the job
// runs, so that a tampered or stale payload fails here rather than later: an
// invalid name, the shared schema or an extension schema gives
// ErrInvalidTenantName, a name that is not registered ErrUnknownTenant (asked
// through the Directory's cache), an unreadable registry a *RegistryError.
func (p *Plugin) ContextFor(ctx context.Context, name string) (context.Context, error) {
	if err := p.registered(); err != nil {
		return nil, err
	}
	if err := p.checkTenantName(name); err != nil {
		return nil, err
	}
	ok, err := p.Directory().Exists(ctx, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notRegistered(name)
	}
	return WithTenant(ctx, name), nil
}

// ForEachTenant runs fn once for every registered tenant, at most concurrency
// at a time (0: the migrator's default). fn receives a context carrying the
// tenant and a *gorm.DB routed to it; it may open transactions of its own
// (or use RunInTenant for one). A failing or panicking fn is reported for
// its tenant and does not stop the others; cancelling ctx stops the run and
// reports the tenants not reached as skipped.
func (p *Plugin) ForEachTenant(ctx context.Context, concurrency int, fn func(ctx context.Context, db *gorm.DB) error) (*Report, error) {
	if err := p.registered(); err != nil {
		return nil, err
	}
	m := p.Migrator(WithConcurrency(concurrency))
	names, err := m.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	return m.run(ctx, "job", names, func(ctx context.Context, name string) (State, error) {
		tctx := WithTenant(ctx, name)
		if err := fn(tctx, p.db.WithContext(tctx)); err != nil {
			return StateFailed, err
		}
		return StateDone, nil
	})
}
