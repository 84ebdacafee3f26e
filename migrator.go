package tenantplugin

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
)

// Migrator creates, migrates and drops tenant schemas. Get one from
// Plugin.Migrator. It is safe for concurrent use, and several processes may
// run migrators against one database at once: every schema is migrated under
// a transaction-scoped advisory lock of its own.
type Migrator struct {
	p                *Plugin
	opts             []MigratorOption // as given to Plugin.Migrator, for With
	migrations       []*gormigrate.Migration
	preMigrations    []*gormigrate.Migration
	sharedMigrations []*gormigrate.Migration
	concurrency      int
	progress         func(Progress)
	stopOnError      bool
	force            bool
	slowCreate       bool
	shadowsAllowed   bool
	seeds            []func(tx *gorm.DB) error

	planOnce sync.Mutex
	plan     *ddlPlan
}

// MigratorOption configures a Migrator.
type MigratorOption func(*Migrator)

// WithMigrations sets the gormigrate migrations run in every tenant schema,
// after AutoMigrate of the tenant models. Their bookkeeping table,
// tenantplugin_migrations, lives in each tenant's schema. Inside a migration
// function the *gorm.DB is routed to that tenant. Because AutoMigrate runs
// first, a migration must not create what the models declare (a plain ADD
// COLUMN of a field the model has fails with "already exists"): use these
// for data (backfills), written to be idempotent, and IF NOT EXISTS for DDL;
// renames go in WithPreMigrations (README, "Evolving a model"). An error of
// a migration's function comes as a *MigrationError naming its ID.
func WithMigrations(ms ...*gormigrate.Migration) MigratorOption {
	return func(m *Migrator) { m.migrations = append(m.migrations, ms...) }
}

// WithPreMigrations sets gormigrate migrations run in every tenant schema
// before AutoMigrate of the tenant models: the place for what the models
// themselves need, such as an enum type a column uses
// (CREATE TYPE mood AS ENUM (...) for a field tagged type:mood), and for
// what AutoMigrate would do wrong, such as renaming a column (AutoMigrate
// would add the new one empty beside the old). They run in every tenant, in
// the capture of the fast creation path and with WithAutoMigrateCreate, and
// are recorded in tenantplugin_migrations like the others; their IDs must
// differ from those of WithMigrations. In a new tenant they run in an empty
// schema, so one that changes a table must do nothing when the table does
// not exist yet (tx.Migrator().HasTable or HasColumn). A tenant's steps, in
// order: pre-migrations, tables, migrations.
func WithPreMigrations(ms ...*gormigrate.Migration) MigratorOption {
	return func(m *Migrator) { m.preMigrations = append(m.preMigrations, ms...) }
}

// WithSharedMigrations sets the gormigrate migrations run in the shared
// schema by MigrateShared, after AutoMigrate of the shared models.
func WithSharedMigrations(ms ...*gormigrate.Migration) MigratorOption {
	return func(m *Migrator) { m.sharedMigrations = append(m.sharedMigrations, ms...) }
}

// WithConcurrency sets how many tenants are migrated or created at once
// (default: twice the number of CPUs, capped by the pool's MaxOpenConns).
func WithConcurrency(n int) MigratorOption {
	return func(m *Migrator) { m.concurrency = n }
}

// WithProgress receives an event each time a tenant finishes (migrated, up to
// date, failed or skipped). It is called from the worker goroutines, one call
// at a time. SlogProgress gives a ready-made logger of these events.
func WithProgress(fn func(Progress)) MigratorOption {
	return func(m *Migrator) { m.progress = fn }
}

// WithStopOnError stops a run at the first failed tenant: tenants not yet
// started are reported as skipped. By default one failure stops nothing.
func WithStopOnError() MigratorOption {
	return func(m *Migrator) { m.stopOnError = true }
}

// WithForce makes MigrateTenants run AutoMigrate and the migrations in every
// tenant, even in those whose fingerprint says they are up to date (use it
// after changing a tenant schema by hand).
func WithForce() MigratorOption {
	return func(m *Migrator) { m.force = true }
}

// WithShadowTablesAllowed lets MigrateShared accept a table in the shared
// schema that has the name of a tenant table. By default that is an error:
// such a table shadows the tenant table for raw SQL, which resolves names
// through the search_path (tenant, shared schema, ...), so a tenant that
// lacked the table (a hand edit) would read the shared copy instead of
// failing. Allow it only for a table that is meant to be read that way.
func WithShadowTablesAllowed() MigratorOption {
	return func(m *Migrator) { m.shadowsAllowed = true }
}

// WithAutoMigrateCreate makes CreateTenant run GORM's AutoMigrate in each new
// schema instead of replaying the DDL captured once per run. Both give the
// same schema; AutoMigrate is slower (it inspects the catalog table by table).
func WithAutoMigrateCreate() MigratorOption {
	return func(m *Migrator) { m.slowCreate = true }
}

// WithSeed adds a function run once in each new tenant, inside its creation
// transaction, after its tables and migrations: the place for default rows
// or a first admin user. tx is routed to the new tenant (GORM-built and raw
// SQL alike; tenantplugin.FromContext(tx.Statement.Context) names it). It
// runs on both creation paths (replayed DDL and WithAutoMigrateCreate), for
// CreateTenant and CreateTenants, never for an existing tenant
// (MigrateTenants). Seeds run in the order given; an error or a panic in one
// fails the creation and leaves nothing: no registry row, no schema, no row
// written by the seed. The error names the tenant.
func WithSeed(fn func(tx *gorm.DB) error) MigratorOption {
	return func(m *Migrator) { m.seeds = append(m.seeds, fn) }
}

// seed runs the seed functions in the new tenant tx is routed to.
func (m *Migrator) seed(tx *gorm.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("seed: panic: %v", r)
		}
	}()
	for i, fn := range m.seeds {
		if err := fn(tx); err != nil {
			err = namedOnce(tx, err)
			if len(m.seeds) > 1 {
				return fmt.Errorf("seed %d of %d: %w", i+1, len(m.seeds), err)
			}
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// Migrator returns a Migrator for the plugin's database, configured by opts.
// Like every method that needs the database, the Migrator's methods return
// ErrNotRegistered until db.Use(plugin) has succeeded.
func (p *Plugin) Migrator(opts ...MigratorOption) *Migrator {
	m := &Migrator{p: p, opts: slices.Clone(opts)}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Plugin returns the plugin the migrator works for.
func (m *Migrator) Plugin() *Plugin { return m.p }

// With returns a new Migrator configured by m's options followed by opts,
// which win (WithProgress replaces m's progress callback, say). The new
// Migrator captures the tenant DDL anew on first use.
func (m *Migrator) With(opts ...MigratorOption) *Migrator {
	return m.p.Migrator(append(slices.Clip(m.opts), opts...)...)
}

// workers is the number of tenants worked on at once: WithConcurrency, or
// twice the number of CPUs capped by the pool's MaxOpenConns.
func (m *Migrator) workers() int {
	if m.concurrency > 0 {
		return m.concurrency
	}
	n := 2 * runtime.NumCPU()
	if sqlDB, err := m.p.sqlDB(); err == nil {
		if max := sqlDB.Stats().MaxOpenConnections; max > 0 && max < n {
			n = max
		}
	}
	return n
}

// MigrateShared creates the shared schema if needed, AutoMigrates the
// library's registry tables and the shared models, then runs the shared
// gormigrate migrations: all in one transaction under the shared schema's
// advisory lock. On a Citus coordinator (detected here, once per Plugin) it
// also keeps the shared schema a plain schema and makes the registry tables
// and the shared tables tenant tables reference Citus reference tables (see
// citus.go); what Citus cannot support gives a *CitusError.
func (m *Migrator) MigrateShared(ctx context.Context) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	p := m.p
	v := &tenantValue{shared: true}
	err := p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lockKey("shared", p.sharedSchema)); err != nil {
			return err
		}
		if err := p.checkSharedSchemaIsNoTenant(tx.Statement.Context, tx.Statement.ConnPool); err != nil {
			return err
		}
		citus, err := p.onCitus(tx.Statement.Context, tx.Statement.ConnPool)
		if err != nil {
			return err
		}
		if citus {
			if err := p.checkCitusOptions(); err != nil {
				return err
			}
			if err := p.citusSharedSchema(tx); err != nil {
				return err
			}
		}
		if p.sharedSchema != "public" {
			if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "CREATE SCHEMA IF NOT EXISTS "+p.sharedQuoted); err != nil {
				return err
			}
		}
		if err := p.setPath(tx, v); err != nil {
			return err
		}
		defer p.own(tx, v)()
		stx := p.migrationSession(tx.WithContext(withPathSet(SharedOnly(ctx), v, tx.Statement.ConnPool)), true)
		models := p.layout.sharedValues
		if err := stx.Migrator().AutoMigrate(models...); err != nil {
			return fmt.Errorf("automigrate shared models: %w", err)
		}
		if err := runGormigrate(stx, m.sharedMigrations); err != nil {
			return err
		}
		if !m.shadowsAllowed {
			if err := p.checkShadows(tx); err != nil {
				return err
			}
		}
		if citus {
			return p.citusReferences(tx)
		}
		if p.roles {
			return p.setupSharedAccess(tx)
		}
		return nil
	})
	if err == nil {
		// On the pool, outside the transaction: the check compares with
		// the connections' own default search_path.
		err = p.checkDatabaseObjects(p.db.WithContext(noRoute(ctx)))
	}
	if err != nil {
		return fmt.Errorf("tenantplugin: migrate shared schema %q: %w", p.sharedSchema, err)
	}
	return nil
}

func runGormigrate(tx *gorm.DB, ms []*gormigrate.Migration) error {
	if len(ms) == 0 {
		return nil
	}
	if err := newGormigrate(tx, ms).Migrate(); err != nil {
		return gormigrateError(err)
	}
	return nil
}

// newGormigrate returns gormigrate over ms on tx, which already is the
// tenant's (or the shared schema's) one transaction; the migrations' errors
// name their IDs (see named).
func newGormigrate(tx *gorm.DB, ms []*gormigrate.Migration) *gormigrate.Gormigrate {
	return gormigrate.New(tx, &gormigrate.Options{
		TableName:      migrationsTable,
		IDColumnName:   "id",
		IDColumnSize:   255,
		UseTransaction: false, // the whole tenant already is one transaction
	}, named(ms))
}

// gormigrateError prefixes errors of gormigrate's own ("gormigrate: ..."
// already says it) but leaves a *MigrationError, which names its migration,
// as it is.
func gormigrateError(err error) error {
	var me *MigrationError
	if errors.As(err, &me) || strings.HasPrefix(err.Error(), "gormigrate") {
		return err
	}
	return fmt.Errorf("gormigrate: %w", err)
}

// named returns copies of ms whose Migrate and Rollback functions return
// their errors, and their panics, as a *MigrationError naming the migration:
// gormigrate passes a migration's error on as it is. A missing Rollback
// function becomes one returning gormigrate.ErrRollbackImpossible, named.
func named(ms []*gormigrate.Migration) []*gormigrate.Migration {
	out := make([]*gormigrate.Migration, len(ms))
	for i, mig := range ms {
		c := *mig
		if mig.Migrate != nil {
			c.Migrate = func(tx *gorm.DB) error { return callMigration(mig.ID, false, mig.Migrate, tx) }
		}
		if mig.Rollback != nil {
			c.Rollback = func(tx *gorm.DB) error { return callMigration(mig.ID, true, mig.Rollback, tx) }
		} else {
			c.Rollback = func(*gorm.DB) error {
				return &MigrationError{ID: mig.ID, Rollback: true, Err: gormigrate.ErrRollbackImpossible}
			}
		}
		out[i] = &c
	}
	return out
}

func callMigration(id string, rollback bool, fn func(*gorm.DB) error, tx *gorm.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &MigrationError{ID: id, Rollback: rollback, Err: fmt.Errorf("panic: %v", r)}
		}
	}()
	if err := fn(tx); err != nil {
		return &MigrationError{ID: id, Rollback: rollback, Err: namedOnce(tx, err)}
	}
	return nil
}

// namedOnce unwraps the *TenantError a statement's error comes in when it
// names the tenant tx is routed to: the error of the tenant's migration or
// creation, outside, names the tenant once, before the step that failed.
func namedOnce(tx *gorm.DB, err error) error {
	if te, ok := err.(*TenantError); ok && te.Op == "" {
		if name, ok := FromContext(tx.Statement.Context); ok && te.Tenant == name {
			return te.Err
		}
	}
	return err
}

// Tenants lists the registered tenants by name.
func (m *Migrator) Tenants(ctx context.Context) ([]string, error) {
	if err := m.p.registered(); err != nil {
		return nil, err
	}
	var names []string
	err := m.p.db.WithContext(SharedOnly(ctx)).Model(&TenantRecord{}).Order("name").Pluck("name", &names).Error
	if err != nil {
		return nil, fmt.Errorf("tenantplugin: list tenants: %w", m.p.registryMissing(err))
	}
	return names, nil
}

// MigrateTenants brings every registered tenant up to date: AutoMigrate of
// the tenant models, then the tenant migrations, each tenant in one
// transaction. Tenants whose recorded fingerprint matches the current model
// set and migration list are known to be up to date from one registry query
// and are not touched (WithForce overrides). One tenant's failure does not
// stop the others (WithStopOnError does); the Report lists every tenant and
// the error, a *RunError, wraps each failure.
func (m *Migrator) MigrateTenants(ctx context.Context) (*Report, error) {
	if err := m.p.registered(); err != nil {
		return nil, err
	}
	var recs []TenantRecord
	if err := m.p.db.WithContext(SharedOnly(ctx)).Select("name", "fingerprint").Order("name").Find(&recs).Error; err != nil {
		return nil, fmt.Errorf("tenantplugin: read tenant registry: %w", m.p.registryMissing(err))
	}
	if len(recs) == 0 {
		// Nothing to migrate: the model set is not captured (an app with a
		// type only a pre-migration creates starts with zero tenants).
		return m.run(ctx, "migrate", nil, nil)
	}
	plan, err := m.ddl(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(recs))
	current := make(map[string]bool, len(recs))
	for i, r := range recs {
		names[i] = r.Name
		current[r.Name] = !m.force && r.Fingerprint == plan.fingerprint
	}
	return m.run(ctx, "migrate", names, func(ctx context.Context, name string) (State, error) {
		if current[name] {
			return StateUpToDate, nil
		}
		return m.migrateTenant(ctx, name, plan)
	})
}

// Migrate is the start-up call: MigrateShared, then MigrateTenants.
func (m *Migrator) Migrate(ctx context.Context) (*Report, error) {
	if err := m.MigrateShared(ctx); err != nil {
		return nil, err
	}
	return m.MigrateTenants(ctx)
}
