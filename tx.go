package tenantplugin

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// The library's own transactions: each holds a transaction-scoped advisory
// lock and runs under a search_path set right after BEGIN.

// lockKey is the advisory-lock name of a schema. Locks are transaction-scoped
// (pg_advisory_xact_lock), so they are released at COMMIT or ROLLBACK and are
// safe behind PgBouncer in transaction mode.
func lockKey(kind, name string) string { return "tenantplugin:" + kind + ":" + name }

// inSchema runs fn in one transaction that holds the advisory lock named by
// lock and whose search_path is v's, set right after BEGIN. The *gorm.DB
// handed to fn routes GORM-built statements to v and runs raw SQL under that
// search_path with no further set_config.
func (p *Plugin) inSchema(ctx context.Context, v *tenantValue, lock string, fn func(tx *gorm.DB) error) error {
	return p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lock); err != nil {
			return err
		}
		if err := p.setPath(tx, v); err != nil {
			return err
		}
		defer p.own(tx, v)()
		return fn(tx.WithContext(withPathSet(ctx, v, tx.Statement.ConnPool)))
	})
}

// own records that transaction tx runs under v's search_path, set once by
// the library (RunInTenant, migrations, creation, the capture): statements
// with v's context skip routing there (withPathSet). A raw statement for another tenant
// would change that transaction's search_path under their feet, so
// checkOwner refuses it. The returned function ends the record; call it
// when the transaction ends.
func (p *Plugin) own(tx *gorm.DB, v *tenantValue) func() {
	key := unprepared(tx.Statement.ConnPool)
	p.owned.Store(key, v)
	return func() { p.owned.Delete(key) }
}

// checkOwner tells how a library-owned transaction (see own) takes a route
// to v: already routed to v (owned: no route needed, and a route with its
// resets would end the path the library set), or refused for any other
// route. A pool the library does not own is neither.
func (p *Plugin) checkOwner(pool gorm.ConnPool, v *tenantValue) (owned bool, err error) {
	o, ok := p.owned.Load(unprepared(pool))
	if !ok {
		return false, nil
	}
	owner := o.(*tenantValue)
	if owner.name == v.name && owner.shared == v.shared {
		return true, nil
	}
	return false, fmt.Errorf("%w: a raw statement for %q inside the transaction of %q (RunInTenant, a migration or a seed) would change that transaction's search_path for every statement after it; "+
		"read another tenant there with GORM-built statements (they are qualified), or in a transaction of its own", ErrCrossTenant, v.label(), owner.label())
}

func advisoryLock(tx *gorm.DB, name string) error {
	_, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context,
		"SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)
	if err != nil {
		return fmt.Errorf("tenantplugin: advisory lock %q: %w", name, err)
	}
	return nil
}

// setPath routes transaction tx to v's search_path (never a tenant role:
// the library's own work, migrations included, runs as the login role).
func (p *Plugin) setPath(tx *gorm.DB, v *tenantValue) error {
	if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, routeSQL, p.routeSchema(v), p.searchPath(v)); err != nil {
		return routeError(v, err)
	}
	return nil
}
