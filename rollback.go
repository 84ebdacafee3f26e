package tenantplugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Rollbacks undo tenant migrations with their gormigrate Rollback functions,
// each tenant in one transaction under the same advisory lock as its
// migration. The migration list is the Migrator's: pre-migrations, then
// migrations (WithPreMigrations, WithMigrations), so a rollback needs the
// Migrator of the release that added the migrations to undo (it holds their
// Rollback functions).
//
// A tenant that had something undone gets an empty fingerprint in the
// registry (never fully migrated), so the next MigrateTenants runs its full
// steps again, AutoMigrate included, and re-applies what was rolled back.

// RollbackTenantTo undoes, in tenant name, every migration of the list after
// migration id that ran there (newest first), as gormigrate's RollbackTo;
// id itself stays applied. It returns StateMigrated when something was
// undone and StateUpToDate when nothing after id had run. An id not in the
// list gives an error wrapping gormigrate.ErrMigrationIDDoesNotExist before
// any SQL is sent; a migration with no Rollback function, one wrapping
// gormigrate.ErrRollbackImpossible; a failing Rollback function, a
// *MigrationError naming it. Errors come wrapped in a *TenantError; on any
// error the tenant is left as it was.
func (m *Migrator) RollbackTenantTo(ctx context.Context, name, id string) (State, error) {
	if err := m.checkRollbackTarget(id); err != nil {
		return StateFailed, err
	}
	return m.rollbackOne(ctx, name, func(g *gormigrate.Gormigrate, _ []string) error {
		return g.RollbackTo(id)
	})
}

// RollbackTenantLast undoes, in tenant name, the newest migration of the
// list that ran there, as gormigrate's RollbackLast. It returns
// StateUpToDate when no migration of the list ran there. Errors as
// RollbackTenantTo.
func (m *Migrator) RollbackTenantLast(ctx context.Context, name string) (State, error) {
	if err := m.checkRollbackTarget(""); err != nil {
		return StateFailed, err
	}
	return m.rollbackOne(ctx, name, func(g *gormigrate.Gormigrate, applied []string) error {
		if len(applied) == 0 {
			return nil
		}
		return g.RollbackLast()
	})
}

// RollbackTenantsTo is RollbackTenantTo for every registered tenant, with the
// bounded concurrency, progress, stop-on-error and report of MigrateTenants:
// the Report counts tenants that had something undone as Migrated and those
// with nothing after id as UpToDate. One tenant's failure does not stop the
// others (WithStopOnError does); the error, a *RunError, wraps each failure.
func (m *Migrator) RollbackTenantsTo(ctx context.Context, id string) (*Report, error) {
	if err := m.checkRollbackTarget(id); err != nil {
		return nil, err
	}
	return m.rollbackAll(ctx, func(g *gormigrate.Gormigrate, _ []string) error {
		return g.RollbackTo(id)
	})
}

// RollbackTenantsLast undoes the newest migration of the list (the last of
// WithMigrations, or of WithPreMigrations when there are none) in every
// registered tenant where it ran. It is the same migration in every tenant:
// unlike gormigrate's RollbackLast in each, it never undoes an older one in
// a tenant where the newest never ran (a tenant that failed it, say).
// Report and errors as RollbackTenantsTo.
func (m *Migrator) RollbackTenantsLast(ctx context.Context) (*Report, error) {
	if err := m.checkRollbackTarget(""); err != nil {
		return nil, err
	}
	list := m.rollbackList()
	newest := list[len(list)-1]
	return m.rollbackAll(ctx, func(g *gormigrate.Gormigrate, applied []string) error {
		for _, id := range applied {
			if id == newest.ID {
				return g.RollbackMigration(newest)
			}
		}
		return nil
	})
}

// rollbackList is the tenant migration list in the order it is applied.
func (m *Migrator) rollbackList() []*gormigrate.Migration {
	return append(append([]*gormigrate.Migration{}, m.preMigrations...), m.migrations...)
}

// checkRollbackTarget checks, before any SQL, that the plugin is registered,
// the list is sound and holds id (when given).
func (m *Migrator) checkRollbackTarget(id string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	if err := m.checkMigrationIDs(); err != nil {
		return err
	}
	list := m.rollbackList()
	if len(list) == 0 {
		return fmt.Errorf("tenantplugin: rollback: %w (give the Migrator WithMigrations)", gormigrate.ErrNoMigrationDefined)
	}
	if id == "" {
		return nil
	}
	for _, mig := range list {
		if mig.ID == id {
			return nil
		}
	}
	return fmt.Errorf("tenantplugin: rollback to %q: %w", id, gormigrate.ErrMigrationIDDoesNotExist)
}

func (m *Migrator) rollbackAll(ctx context.Context, undo func(*gormigrate.Gormigrate, []string) error) (*Report, error) {
	names, err := m.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	return m.run(ctx, "rollback", names, func(ctx context.Context, name string) (State, error) {
		return m.rollbackTenant(ctx, name, undo)
	})
}

func (m *Migrator) rollbackOne(ctx context.Context, name string, undo func(*gormigrate.Gormigrate, []string) error) (State, error) {
	if err := m.p.checkTenantName(name); err != nil {
		return StateFailed, err
	}
	st, err := m.rollbackTenant(ctx, name, undo)
	if err != nil && !errors.Is(err, ErrUnknownTenant) {
		return st, &TenantError{Tenant: name, Op: "rollback", Err: err}
	}
	return st, err
}

// rollbackTenant runs undo in tenant name's one transaction, under its
// advisory lock. undo gets gormigrate over the list and the IDs of the list
// applied in the tenant, in list order.
func (m *Migrator) rollbackTenant(ctx context.Context, name string, undo func(*gormigrate.Gormigrate, []string) error) (State, error) {
	v := newTenantValue(name)
	if v.err != nil {
		return StateFailed, v.err
	}
	state := StateUpToDate
	list := m.rollbackList()
	err := m.p.inSchema(ctx, v, lockKey("tenant", name), func(tx *gorm.DB) error {
		tx = m.p.migrationSession(tx, false)
		var rec TenantRecord
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("name").
			Where("name = ?", name).Take(&rec).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return notRegistered(name)
			}
			return err
		}
		if !tx.Migrator().HasTable(migrationsTable) {
			return nil // no migration ever ran here
		}
		before, err := appliedIDs(tx, list)
		if err != nil {
			return err
		}
		// Rollback functions, like migrations, see the tenant only (see
		// Migrator.steps).
		if err := m.p.setMigrationPath(tx, v, true); err != nil {
			return err
		}
		if err := undo(newGormigrate(tx, list), before); err != nil {
			return gormigrateError(err)
		}
		after, err := appliedIDs(tx, list)
		if err != nil {
			return err
		}
		if len(after) == len(before) {
			return nil
		}
		state = StateMigrated
		// The recorded fingerprint claimed the undone migrations: clear it,
		// so that the next MigrateTenants runs this tenant's steps again.
		return markMigrated(tx, name, "")
	})
	if err != nil {
		return StateFailed, err
	}
	return state, nil
}

// appliedIDs returns the IDs of list recorded as applied in the tenant tx is
// routed to, in list order.
func appliedIDs(tx *gorm.DB, list []*gormigrate.Migration) ([]string, error) {
	var ids []string
	if err := tx.Table(migrationsTable).Pluck("id", &ids).Error; err != nil {
		return nil, err
	}
	ran := make(map[string]bool, len(ids))
	for _, id := range ids {
		ran[id] = true
	}
	var out []string
	for _, mig := range list {
		if ran[mig.ID] {
			out = append(out, mig.ID)
		}
	}
	return out, nil
}
