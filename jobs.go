package tenantplugin

import (
	"context"

	"gorm.io/gorm"
)

// ContextFor validates a tenant name that arrives from outside a request (a
// job payload, a command-line argument, a message) and returns ctx carrying
// it. Serialize the tenant name with a job; call ContextFor where the job
// runs, so a tampered or stale payload fails with ErrInvalidTenantName here
// rather than later.
func ContextFor(ctx context.Context, name string) (context.Context, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
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
	if p.db == nil {
		return nil, errNotRegistered
	}
	m := p.Migrator(p.db, WithConcurrency(concurrency))
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
