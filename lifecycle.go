package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The lifecycle of one tenant: create, migrate, drop.

// CreateTenant registers tenant name, creates its schema and tables and runs
// the tenant migrations, in one transaction: on any failure nothing remains
// (no registry row, no schema). A registered name gives ErrTenantExists. The
// registry must exist (MigrateShared). Domains, if given, are registered for
// the tenant in the same transaction (see HostResolver).
func (m *Migrator) CreateTenant(ctx context.Context, name string, domains ...string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	if err := m.p.checkTenantName(name); err != nil {
		return err
	}
	hosts, err := normalizeHosts(domains)
	if err != nil {
		return err
	}
	plan, err := m.ddl(ctx)
	if err != nil {
		return err
	}
	err = m.createTenant(ctx, name, plan, hosts)
	m.p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrTenantExists) && !errors.Is(err, ErrInvalidTenantName) {
		var te *TenantError
		if !errors.As(err, &te) {
			err = &TenantError{Tenant: name, Op: "create", Err: err}
		}
	}
	return err
}

func (m *Migrator) createTenant(ctx context.Context, name string, plan *ddlPlan, hosts []string) error {
	return m.createTenantWith(ctx, name, plan, hosts, nil, m.seed)
}

// createTenantWith is createTenant with two hooks, for CloneTenant: before
// runs first in the transaction (nil: nothing), fill after the steps, in
// place of the seeds.
func (m *Migrator) createTenantWith(ctx context.Context, name string, plan *ddlPlan, hosts []string,
	before func(tx *gorm.DB) error, fill func(ttx *gorm.DB) error) error {
	p := m.p
	v := newTenantValue(name)
	return p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if before != nil {
			if err := before(tx); err != nil {
				return err
			}
		}
		// The tenant's lock, and the login role's names in the same
		// statement: a schema named after the role would be found by the
		// server's default search_path ("$user", public), so unrouted SQL
		// would read the tenant's tables.
		var sessionUser, currentUser string
		row := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context,
			"SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))::text, session_user, current_user", lockKey("tenant", name))
		var lock string
		if err := row.Scan(&lock, &sessionUser, &currentUser); err != nil {
			return fmt.Errorf("tenantplugin: advisory lock: %w", err)
		}
		if name == sessionUser || name == currentUser {
			return &NameError{Name: name, Reason: "it is the name of the role the application connects as; the default search_path (\"$user\", public) would resolve unrouted SQL to this tenant's tables"}
		}
		res := tx.WithContext(SharedOnly(ctx)).Clauses(clause.OnConflict{DoNothing: true}).
			Create(&TenantRecord{Name: name})
		if res.Error != nil {
			return p.registryMissing(res.Error)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("%w: %q", ErrTenantExists, name)
		}
		for _, h := range hosts {
			if err := tx.WithContext(SharedOnly(ctx)).Create(&TenantDomain{Host: h, Tenant: name}).Error; err != nil {
				return fmt.Errorf("domain %q: %w", h, err)
			}
		}
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "CREATE SCHEMA "+v.quoted); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P06" { // duplicate_schema
				return fmt.Errorf("%w: schema %s exists but is not registered", ErrTenantExists, v.quoted)
			}
			return err
		}
		if err := p.setPath(tx, v); err != nil {
			return err
		}
		defer p.own(tx, v)()
		ttx := p.migrationSession(tx.WithContext(withPathSet(ctx, v, tx.Statement.ConnPool)), false)
		tables := replayTables
		if m.slowCreate {
			tables = autoMigrateTables
		}
		if err := m.steps(ttx, name, plan, tables, true); err != nil {
			return err
		}
		if err := fill(ttx); err != nil {
			return err
		}
		if p.roles {
			if err := p.setupTenantRole(tx, v); err != nil {
				return err
			}
		}
		return markMigrated(ttx, name, plan.fingerprint)
	})
}

// How the steps build a tenant's tables.
type tableStep int

const (
	replayTables      tableStep = iota // replay the captured DDL (a new tenant)
	autoMigrateTables                  // GORM's AutoMigrate of the tenant models
	keepTables                         // the model shape is unchanged: nothing to do
)

// steps brings the schema tx is routed to up to date, inside its tenant's
// one transaction, in this order:
//
//  1. the pre-migrations (WithPreMigrations): types, functions and anything
//     else the models use;
//  2. the tables, as tables says;
//  3. the migrations (WithMigrations);
//  4. when migrations ran, a check that they left nothing database-wide in
//     the schema and changed nothing outside it (DependencyError).
//
// The migrations run with a search_path of the tenant and the extension
// schemas only, not the shared schema: a new tenant's schema is empty when
// its pre-migrations run, and "ALTER TABLE IF EXISTS tasks ..." would
// otherwise reach a same-named table of the shared schema. Raw SQL in a
// migration names shared tables with their schema; GORM-built statements
// are qualified anyway. The tables step sees the shared schema, where the
// foreign keys of tenant models point. The caller records the fingerprint
// afterwards. Errors name the step.
func (m *Migrator) steps(tx *gorm.DB, tenant string, plan *ddlPlan, tables tableStep, created bool) error {
	v := valueFrom(tx.Statement.Context)
	checked := len(m.preMigrations)+len(m.migrations) > 0 && v != nil && !v.capture
	var before []string // a schema created in this transaction has no ties yet
	if checked && !created {
		var err error
		if before, err = outsideDependents(tx.Statement.Context, tx.Statement.ConnPool, tenant); err != nil {
			return fmt.Errorf("check database-wide objects: %w", err)
		}
	}
	if len(m.preMigrations) > 0 {
		if err := m.p.setMigrationPath(tx, v, true); err != nil {
			return err
		}
		if err := runGormigrate(tx, m.preMigrations); err != nil {
			return fmt.Errorf("pre-migrations: %w", err)
		}
		if err := m.p.setMigrationPath(tx, v, false); err != nil {
			return err
		}
	}
	switch tables {
	case replayTables:
		if err := plan.replay(tx); err != nil {
			return err
		}
	case autoMigrateTables:
		if err := m.p.autoMigrateTenant(tx); err != nil {
			return fmt.Errorf("automigrate: %w", err)
		}
	}
	if len(m.migrations) > 0 {
		if err := m.p.setMigrationPath(tx, v, true); err != nil {
			return err
		}
		if err := runGormigrate(tx, m.migrations); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		if err := m.p.setMigrationPath(tx, v, false); err != nil {
			return err
		}
	}
	if checked {
		return m.p.checkTenantObjects(tx, tenant, before)
	}
	return nil
}

// setMigrationPath sets the search_path of a tenant's migration transaction:
// without the shared schema (isolated) for migrations, with it for the
// tables.
func (p *Plugin) setMigrationPath(tx *gorm.DB, v *tenantValue, isolated bool) error {
	if v == nil {
		return nil
	}
	w := *v
	w.isolated = isolated
	return p.setPath(tx, &w)
}

// unknownMigrations lists the migration IDs recorded in tenant's schema
// that this Migrator does not know: the schema is ahead of it.
func (m *Migrator) unknownMigrations(tx *gorm.DB, tenant string) ([]string, error) {
	table := QuoteIdentifier(tenant) + "." + QuoteIdentifier(migrationsTable)
	var exists bool
	row := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context, "SELECT pg_catalog.to_regclass($1) IS NOT NULL", table)
	if err := row.Scan(&exists); err != nil || !exists {
		return nil, err // no bookkeeping table: no migration recorded
	}
	return listStrings(tx.Statement.Context, tx.Statement.ConnPool,
		`SELECT id FROM `+table+` WHERE NOT (id = ANY ($1)) ORDER BY id`, m.knownMigrationIDs())
}

func (m *Migrator) knownMigrationIDs() []string {
	ids := make([]string, 0, len(m.preMigrations)+len(m.migrations))
	for _, mig := range m.preMigrations {
		ids = append(ids, mig.ID)
	}
	for _, mig := range m.migrations {
		ids = append(ids, mig.ID)
	}
	return ids
}

// autoMigrateTenant runs GORM's AutoMigrate of the tenant models on tx, a
// migration session routed to one tenant (or the capture's scratch schema).
func (p *Plugin) autoMigrateTenant(tx *gorm.DB) error {
	return tx.Migrator().AutoMigrate(p.layout.tenantValues...)
}

func markMigrated(tx *gorm.DB, name, fingerprint string) error {
	now := time.Now()
	return tx.Model(&TenantRecord{}).Where("name = ?", name).
		Updates(map[string]any{"fingerprint": fingerprint, "migrated_at": now}).Error
}

// CreateTenants creates many tenants with bounded concurrency (every core is
// used: each tenant is one transaction on its own connection).
func (m *Migrator) CreateTenants(ctx context.Context, names []string) (*Report, error) {
	plan, err := m.ddl(ctx)
	if err != nil {
		return nil, err
	}
	defer m.p.Directory().Invalidate()
	return m.run(ctx, "create", names, func(ctx context.Context, name string) (State, error) {
		if err := m.p.checkTenantName(name); err != nil {
			return StateFailed, err
		}
		if err := m.createTenant(ctx, name, plan, nil); err != nil {
			return StateFailed, err
		}
		return StateMigrated, nil
	})
}

// DropTenant removes tenant name: its schema with everything in it, and its
// registry row (with its domains), in one transaction. An unregistered name
// gives ErrUnknownTenant; the shared schema can never be dropped.
func (m *Migrator) DropTenant(ctx context.Context, name string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	if err := m.p.checkTenantName(name); err != nil {
		return err
	}
	// DROP SCHEMA ... CASCADE locks every table of the tenant and the shared
	// tables they hold foreign keys to; a transaction that reads the same
	// tables in another order can deadlock with it, and PostgreSQL then
	// cancels one of the two (40P01). The drop is all or nothing, so it is
	// run again, at most deadlockRetries times (seen in the test suite: a
	// drop at cleanup against the requests of the HTTP example).
	err := retryOnDeadlock(func() error { return m.dropTenant(ctx, name) })
	m.p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrUnknownTenant) && !isDependencyError(err) {
		return &TenantError{Tenant: name, Op: "drop", Err: err}
	}
	return err
}

// dropTenant is one attempt of DropTenant, in one transaction.
func (m *Migrator) dropTenant(ctx context.Context, name string) error {
	return m.p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lockKey("tenant", name)); err != nil {
			return err
		}
		res := tx.WithContext(SharedOnly(ctx)).Where("name = ?", name).Delete(&TenantRecord{})
		if res.Error != nil {
			return m.p.registryMissing(res.Error)
		}
		if res.RowsAffected == 0 {
			return notRegistered(name)
		}
		if exists, err := schemaExistsOn(tx.Statement.Context, tx.Statement.ConnPool, name); err != nil {
			return err
		} else if exists {
			// DROP SCHEMA ... CASCADE follows dependencies out of the
			// schema: refuse, naming them, when anything outside depends
			// on it. Nothing is dropped outside the tenant.
			objs, err := outsideDependents(tx.Statement.Context, tx.Statement.ConnPool, name)
			if err != nil {
				return err
			}
			if len(objs) > 0 {
				return &DependencyError{Tenant: name, Op: "drop", Objects: objs}
			}
			if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "DROP SCHEMA "+QuoteIdentifier(name)+" CASCADE"); err != nil {
				return err
			}
		}
		if m.p.roles {
			return m.p.dropTenantRole(tx, name)
		}
		return nil
	})
}

// MigrateTenant brings one tenant up to date (see MigrateTenants).
func (m *Migrator) MigrateTenant(ctx context.Context, name string) (State, error) {
	if err := m.p.registered(); err != nil {
		return StateFailed, err
	}
	if err := ValidateName(name); err != nil {
		return StateFailed, err
	}
	plan, err := m.ddl(ctx)
	if err != nil {
		return StateFailed, err
	}
	st, err := m.migrateTenant(ctx, name, plan)
	if err != nil {
		return st, &TenantError{Tenant: name, Op: "migrate", Err: err}
	}
	return st, nil
}

func (m *Migrator) migrateTenant(ctx context.Context, name string, plan *ddlPlan) (State, error) {
	v := newTenantValue(name)
	if v.err != nil {
		return StateFailed, v.err
	}
	state := StateMigrated
	err := m.p.inSchema(ctx, v, lockKey("tenant", name), func(tx *gorm.DB) error {
		tx = m.p.migrationSession(tx, false)
		// Under the lock: another process may have just done the work.
		var rec TenantRecord
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("name", "fingerprint").
			Where("name = ?", name).Take(&rec).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return notRegistered(name)
			}
			return err
		}
		if !m.force && rec.Fingerprint == plan.fingerprint {
			state = StateUpToDate
			return nil
		}
		// A newer version of the app may have migrated this tenant (a
		// rolling deploy): never roll its schema or fingerprint back.
		if unknown, err := m.unknownMigrations(tx, name); err != nil {
			return err
		} else if len(unknown) > 0 {
			state = StateAhead
			return nil
		}
		// Same model shape as at its last migration: AutoMigrate would find
		// nothing to do, so only the migrations run.
		tables := keepTables
		if m.force || !plan.sameShape(rec.Fingerprint) {
			tables = autoMigrateTables
		}
		if err := m.steps(tx, name, plan, tables, false); err != nil {
			return err
		}
		return markMigrated(tx, name, plan.fingerprint)
	})
	if err != nil {
		return StateFailed, err
	}
	return state, nil
}
