package tenantplugin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Migrator creates, migrates and drops tenant schemas. Get one from
// Plugin.Migrator. It is safe for concurrent use, and several processes may
// run migrators against one database at once: every schema is migrated under
// a transaction-scoped advisory lock of its own.
type Migrator struct {
	p                *Plugin
	migrations       []*gormigrate.Migration
	sharedMigrations []*gormigrate.Migration
	concurrency      int
	progress         func(Progress)
	stopOnError      bool
	force            bool
	slowCreate       bool

	planOnce sync.Mutex
	plan     *ddlPlan
	err      error // registering the plugin failed: every method returns it
}

// MigratorOption configures a Migrator.
type MigratorOption func(*Migrator)

// WithMigrations sets the gormigrate migrations run in every tenant schema,
// after AutoMigrate of the tenant models. Their bookkeeping table,
// tenantplugin_migrations, lives in each tenant's schema. Inside a migration
// function the *gorm.DB is routed to that tenant.
func WithMigrations(ms ...*gormigrate.Migration) MigratorOption {
	return func(m *Migrator) { m.migrations = append(m.migrations, ms...) }
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

// WithAutoMigrateCreate makes CreateTenant run GORM's AutoMigrate in each new
// schema instead of replaying the DDL captured once per run. Both give the
// same schema; AutoMigrate is slower (it inspects the catalog table by table).
func WithAutoMigrateCreate() MigratorOption {
	return func(m *Migrator) { m.slowCreate = true }
}

// Migrator returns a Migrator for the plugin's database: db must be the
// *gorm.DB the plugin is registered on (it is registered on db if it is not
// registered yet; should that fail, every method returns the error).
func (p *Plugin) Migrator(db *gorm.DB, opts ...MigratorOption) *Migrator {
	m := &Migrator{p: p}
	if p.db == nil {
		m.err = db.Use(p)
	}
	for _, o := range opts {
		o(m)
	}
	if m.concurrency <= 0 {
		m.concurrency = 2 * runtime.NumCPU()
		if sqlDB, err := p.sqlDB(); m.err == nil && err == nil {
			if max := sqlDB.Stats().MaxOpenConnections; max > 0 && max < m.concurrency {
				m.concurrency = max
			}
		}
	}
	return m
}

// State is the outcome for one tenant in a Report.
type State int

const (
	// StateMigrated: the tenant's schema was created or changed.
	StateMigrated State = iota + 1
	// StateUpToDate: nothing needed doing.
	StateUpToDate
	// StateFailed: the tenant's transaction failed and was rolled back; its
	// schema is as it was before the run.
	StateFailed
	// StateSkipped: not attempted (context cancelled or stop on error).
	StateSkipped
	// StateDone: ForEachTenant ran its function for the tenant.
	StateDone
)

// String implements fmt.Stringer.
func (s State) String() string {
	switch s {
	case StateMigrated:
		return "migrated"
	case StateUpToDate:
		return "up-to-date"
	case StateFailed:
		return "failed"
	case StateSkipped:
		return "skipped"
	case StateDone:
		return "done"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// TenantResult is one tenant's line in a Report.
type TenantResult struct {
	Tenant   string
	State    State
	Err      error
	Duration time.Duration
}

// Report is the outcome of a run over many tenants.
type Report struct {
	Results []TenantResult // in the order of the tenant names given
	// Migrated counts tenants migrated or created (or, for ForEachTenant,
	// done); the others count their states.
	Migrated, UpToDate, Failed, Skipped int
	Elapsed                             time.Duration

	op string // what the run did: "migrate", "create", "job", "run"
}

// Failures returns the failed tenants' results.
func (r *Report) Failures() []TenantResult {
	var out []TenantResult
	for _, t := range r.Results {
		if t.State == StateFailed {
			out = append(out, t)
		}
	}
	return out
}

// String implements fmt.Stringer.
func (r *Report) String() string {
	switch r.op {
	case "create":
		return fmt.Sprintf("%d tenants: %d created, %d failed, %d skipped in %s",
			len(r.Results), r.Migrated, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
	case "job", "run":
		return fmt.Sprintf("%d tenants: %d done, %d failed, %d skipped in %s",
			len(r.Results), r.Migrated, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d tenants: %d migrated, %d up to date, %d failed, %d skipped in %s",
		len(r.Results), r.Migrated, r.UpToDate, r.Failed, r.Skipped, r.Elapsed.Round(time.Millisecond))
}

// RunError is returned when some tenants of a run failed or were skipped. It
// unwraps to each failure (each a *TenantError naming its tenant) and to the
// context's error when the run was cancelled.
type RunError struct {
	Report *Report
	errs   []error
}

// Error implements error.
func (e *RunError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tenantplugin: %d of %d tenants failed", e.Report.Failed, len(e.Report.Results))
	if e.Report.Skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", e.Report.Skipped)
	}
	for i, err := range e.errs {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.errs)-5)
			break
		}
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As every failure.
func (e *RunError) Unwrap() []error { return e.errs }

// Progress is one event of a long run.
type Progress struct {
	Tenant  string
	State   State
	Err     error
	Done    int           // tenants finished so far, this one included
	Total   int           // tenants in the run
	Took    time.Duration // this tenant
	Elapsed time.Duration // since the run started
}

// MigrateShared creates the shared schema if needed, AutoMigrates the
// library's registry tables and the shared models, then runs the shared
// gormigrate migrations: all in one transaction under the shared schema's
// advisory lock.
func (m *Migrator) MigrateShared(ctx context.Context) error {
	if m.err != nil {
		return m.err
	}
	p := m.p
	v := &tenantValue{shared: true}
	err := p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lockKey("shared", p.sharedSchema)); err != nil {
			return err
		}
		if p.sharedSchema != "public" {
			if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "CREATE SCHEMA IF NOT EXISTS "+p.sharedQuoted); err != nil {
				return err
			}
		}
		if err := p.setPath(tx, v); err != nil {
			return err
		}
		stx := p.migrationSession(tx.WithContext(withPathSet(SharedOnly(ctx), v)), true)
		models := append(append([]any{}, libraryModels...), p.sharedModels...)
		if err := stx.Migrator().AutoMigrate(models...); err != nil {
			return fmt.Errorf("automigrate shared models: %w", err)
		}
		if err := runGormigrate(stx, m.sharedMigrations); err != nil {
			return err
		}
		if p.roles {
			return p.setupSharedAccess(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tenantplugin: migrate shared schema %q: %w", p.sharedSchema, err)
	}
	return nil
}

func runGormigrate(tx *gorm.DB, ms []*gormigrate.Migration) error {
	if len(ms) == 0 {
		return nil
	}
	g := gormigrate.New(tx, &gormigrate.Options{
		TableName:      migrationsTable,
		IDColumnName:   "id",
		IDColumnSize:   255,
		UseTransaction: false, // the whole tenant already is one transaction
	}, ms)
	if err := g.Migrate(); err != nil {
		return fmt.Errorf("gormigrate: %w", err)
	}
	return nil
}

// Tenants lists the registered tenants by name.
func (m *Migrator) Tenants(ctx context.Context) ([]string, error) {
	if m.err != nil {
		return nil, m.err
	}
	var names []string
	err := m.p.db.WithContext(SharedOnly(ctx)).Model(&TenantRecord{}).Order("name").Pluck("name", &names).Error
	if err != nil {
		return nil, fmt.Errorf("tenantplugin: list tenants: %w", err)
	}
	return names, nil
}

// CreateTenant registers tenant name, creates its schema and tables and runs
// the tenant migrations, in one transaction: on any failure nothing remains
// (no registry row, no schema). A registered name gives ErrTenantExists. The
// registry must exist (MigrateShared). Domains, if given, are registered for
// the tenant in the same transaction (see HostResolver).
func (m *Migrator) CreateTenant(ctx context.Context, name string, domains ...string) error {
	if m.err != nil {
		return m.err
	}
	if err := m.checkName(name); err != nil {
		return err
	}
	hosts := make([]string, len(domains))
	for i, d := range domains {
		h, err := NormalizeHost(d)
		if err != nil {
			return err
		}
		hosts[i] = h
	}
	plan, err := m.ddl(ctx)
	if err != nil {
		return err
	}
	err = m.createTenant(ctx, name, plan, hosts)
	m.p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrTenantExists) {
		var te *TenantError
		if !errors.As(err, &te) {
			err = &TenantError{Tenant: name, Op: "create", Err: err}
		}
	}
	return err
}

// checkName validates a tenant name for creation or removal: the tenant rule,
// and never the shared schema.
func (m *Migrator) checkName(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if name == m.p.sharedSchema {
		return &NameError{Name: name, Reason: "it is the shared schema"}
	}
	return nil
}

func (m *Migrator) createTenant(ctx context.Context, name string, plan *ddlPlan, hosts []string) error {
	p := m.p
	v := newTenantValue(name)
	return p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lockKey("tenant", name)); err != nil {
			return err
		}
		res := tx.WithContext(SharedOnly(ctx)).Clauses(clause.OnConflict{DoNothing: true}).
			Create(&TenantRecord{Name: name})
		if res.Error != nil {
			return res.Error
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
		ttx := p.migrationSession(tx.WithContext(withPathSet(ctx, v)), false)
		if m.slowCreate {
			if err := ttx.Migrator().AutoMigrate(p.tenantModels...); err != nil {
				return fmt.Errorf("automigrate: %w", err)
			}
		} else if err := plan.replay(ttx); err != nil {
			return err
		}
		if err := runGormigrate(ttx, m.migrations); err != nil {
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
		if err := m.checkName(name); err != nil {
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
	if m.err != nil {
		return m.err
	}
	if err := m.checkName(name); err != nil {
		return err
	}
	err := m.p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := advisoryLock(tx, lockKey("tenant", name)); err != nil {
			return err
		}
		res := tx.WithContext(SharedOnly(ctx)).Where("name = ?", name).Delete(&TenantRecord{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return notRegistered(name)
		}
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "DROP SCHEMA IF EXISTS "+QuoteIdentifier(name)+" CASCADE"); err != nil {
			return err
		}
		if m.p.roles {
			return m.p.dropTenantRole(tx, name)
		}
		return nil
	})
	m.p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrUnknownTenant) {
		return &TenantError{Tenant: name, Op: "drop", Err: err}
	}
	return err
}

// MigrateTenants brings every registered tenant up to date: AutoMigrate of
// the tenant models, then the tenant migrations, each tenant in one
// transaction. Tenants whose recorded fingerprint matches the current model
// set and migration list are known to be up to date from one registry query
// and are not touched (WithForce overrides). One tenant's failure does not
// stop the others (WithStopOnError does); the Report lists every tenant and
// the error, a *RunError, wraps each failure.
func (m *Migrator) MigrateTenants(ctx context.Context) (*Report, error) {
	plan, err := m.ddl(ctx)
	if err != nil {
		return nil, err
	}
	var recs []TenantRecord
	if err := m.p.db.WithContext(SharedOnly(ctx)).Select("name", "fingerprint").Order("name").Find(&recs).Error; err != nil {
		return nil, fmt.Errorf("tenantplugin: read tenant registry: %w", err)
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

// MigrateTenant brings one tenant up to date (see MigrateTenants).
func (m *Migrator) MigrateTenant(ctx context.Context, name string) (State, error) {
	if m.err != nil {
		return StateFailed, m.err
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
		// Same model shape as at its last migration: AutoMigrate would find
		// nothing to do, so only the migrations run.
		if m.force || !plan.sameShape(rec.Fingerprint) {
			if err := tx.Migrator().AutoMigrate(m.p.tenantModels...); err != nil {
				return fmt.Errorf("automigrate: %w", err)
			}
		}
		if err := runGormigrate(tx, m.migrations); err != nil {
			return err
		}
		return markMigrated(tx, name, plan.fingerprint)
	})
	if err != nil {
		return StateFailed, err
	}
	return state, nil
}

// Migrate is the start-up call: MigrateShared, then MigrateTenants.
func (m *Migrator) Migrate(ctx context.Context) (*Report, error) {
	if err := m.MigrateShared(ctx); err != nil {
		return nil, err
	}
	return m.MigrateTenants(ctx)
}

// run applies fn to every name with bounded concurrency, recovering panics,
// honouring cancellation and reporting progress.
func (m *Migrator) run(ctx context.Context, op string, names []string, fn func(context.Context, string) (State, error)) (*Report, error) {
	start := time.Now()
	rep := &Report{Results: make([]TenantResult, len(names)), op: op}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex // guards done, rep counters and progress calls
	done := 0
	finish := func(i int, res TenantResult) {
		mu.Lock()
		defer mu.Unlock()
		rep.Results[i] = res
		done++
		switch res.State {
		case StateMigrated, StateDone:
			rep.Migrated++
		case StateUpToDate:
			rep.UpToDate++
		case StateFailed:
			rep.Failed++
			if m.stopOnError {
				cancel()
			}
		case StateSkipped:
			rep.Skipped++
		}
		if m.progress != nil {
			m.progress(Progress{Tenant: res.Tenant, State: res.State, Err: res.Err, Done: done, Total: len(names),
				Took: res.Duration, Elapsed: time.Since(start)})
		}
	}

	work := make(chan int)
	var wg sync.WaitGroup
	workers := min(m.concurrency, len(names))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := names[i]
				if runCtx.Err() != nil {
					finish(i, TenantResult{Tenant: name, State: StateSkipped, Err: runCtx.Err()})
					continue
				}
				t0 := time.Now()
				st, err := safeCall(runCtx, name, fn)
				if err != nil {
					var te *TenantError
					if !errors.As(err, &te) || te.Tenant != name {
						err = &TenantError{Tenant: name, Op: op, Err: err}
					}
					st = StateFailed
					if runCtx.Err() != nil && errors.Is(err, runCtx.Err()) {
						st = StateSkipped
					}
				}
				finish(i, TenantResult{Tenant: name, State: st, Err: err, Duration: time.Since(t0)})
			}
		}()
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	rep.Elapsed = time.Since(start)

	var errs []error
	for _, r := range rep.Results {
		if r.State == StateFailed {
			errs = append(errs, r.Err)
		}
	}
	if rep.Skipped > 0 && ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	if len(errs) > 0 || rep.Skipped > 0 {
		return rep, &RunError{Report: rep, errs: errs}
	}
	return rep, nil
}

func safeCall(ctx context.Context, name string, fn func(context.Context, string) (State, error)) (st State, err error) {
	defer func() {
		if r := recover(); r != nil {
			st, err = StateFailed, fmt.Errorf("panic: %v", r)
		}
	}()
	return fn(ctx, name)
}

// ddlPlan is the DDL GORM's AutoMigrate runs to build the tenant tables in an
// empty schema, captured once per Migrator by running AutoMigrate in a
// scratch schema inside a transaction that is rolled back. Replaying it
// builds a new tenant without AutoMigrate's catalog inspection, in one round
// trip. fingerprint hashes the schema shape and the migration IDs: a tenant
// migrated under the same fingerprint needs no work.
type ddlPlan struct {
	// stmts run in order; consecutive statements without arguments are
	// joined into one script (one round trip over the simple protocol).
	stmts       []capStm
	fingerprint string
}

type capStm struct {
	sql  string
	vars []any
}

type recorder struct {
	mu    sync.Mutex
	stmts []capStm
}

type recorderKey struct{}

func (m *Migrator) ddl(ctx context.Context) (*ddlPlan, error) {
	if m.err != nil {
		return nil, m.err
	}
	m.planOnce.Lock()
	defer m.planOnce.Unlock()
	if m.plan != nil {
		return m.plan, nil
	}
	plan, err := m.captureDDL(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenantplugin: capture tenant DDL: %w", err)
	}
	m.plan = plan
	return plan, nil
}

var errCaptured = errors.New("captured")

func (m *Migrator) captureDDL(ctx context.Context) (*ddlPlan, error) {
	p := m.p
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	scratch := "tenantplugin_capture_" + hex.EncodeToString(rnd[:])
	v := newTenantValue(scratch)
	rec := &recorder{}
	var shape []string
	err := p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, "CREATE SCHEMA "+v.quoted); err != nil {
			return err
		}
		if err := p.setPath(tx, v); err != nil {
			return err
		}
		cctx := context.WithValue(withPathSet(ctx, v), recorderKey{}, rec)
		if err := p.migrationSession(tx.WithContext(cctx), false).Migrator().AutoMigrate(p.tenantModels...); err != nil {
			return err
		}
		var err error
		if shape, err = catalogShape(tx, scratch); err != nil {
			return err
		}
		return errCaptured // roll back: the scratch schema never exists outside
	})
	if !errors.Is(err, errCaptured) {
		return nil, err
	}
	plan := &ddlPlan{}
	var script strings.Builder
	for _, s := range rec.stmts {
		if strings.Contains(s.sql, scratch) {
			return nil, fmt.Errorf("captured DDL names the scratch schema: %s", s.sql)
		}
		if len(s.vars) == 0 {
			script.WriteString(s.sql)
			script.WriteString(";\n")
			continue
		}
		// Keep order: flush the script before a statement with arguments.
		if script.Len() > 0 {
			plan.stmts = append(plan.stmts, capStm{sql: script.String()})
			script.Reset()
		}
		plan.stmts = append(plan.stmts, s)
	}
	if script.Len() > 0 {
		plan.stmts = append(plan.stmts, capStm{sql: script.String()})
	}
	// The fingerprint hashes the shape of the schema AutoMigrate built, read
	// back from the catalog, not GORM's statements: GORM walks maps while
	// migrating, so its statement order (and whether a foreign key comes
	// inline or as ALTER TABLE) varies from run to run.
	// It has two halves: the model shape, then the migration list. When only
	// the list changed (a new migration), AutoMigrate has nothing to do and
	// only the migrations run.
	hs := sha256.New()
	hs.Write([]byte("tenantplugin/v1\n"))
	for _, l := range shape {
		hs.Write([]byte(strings.ReplaceAll(l, scratch, "$S") + "\n"))
	}
	hm := sha256.New()
	for _, mig := range m.migrations { // in order: order matters here
		fmt.Fprintf(hm, "migration %s\n", mig.ID)
	}
	plan.fingerprint = hex.EncodeToString(hs.Sum(nil))[:16] + hex.EncodeToString(hm.Sum(nil))[:16]
	return plan, nil
}

// unprepared returns the transaction under GORM's PrepareStmt wrapper: a
// script of several statements cannot be a prepared statement.
func unprepared(pool gorm.ConnPool) gorm.ConnPool {
	if p, ok := pool.(*gorm.PreparedStmtTX); ok && p.Tx != nil {
		return p.Tx
	}
	return pool
}

// sameShape reports whether a recorded fingerprint has this plan's model
// shape (its first half).
func (plan *ddlPlan) sameShape(recorded string) bool {
	return len(recorded) == len(plan.fingerprint) && recorded[:16] == plan.fingerprint[:16]
}

// replay runs the captured DDL on tx, whose search_path is the new tenant's.
func (plan *ddlPlan) replay(tx *gorm.DB) error {
	conn := unprepared(tx.Statement.ConnPool)
	for _, s := range plan.stmts {
		if _, err := conn.ExecContext(tx.Statement.Context, s.sql, s.vars...); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	return nil
}

// record keeps a raw statement of a capture run.
func record(db *gorm.DB) {
	rec, ok := db.Statement.Context.Value(recorderKey{}).(*recorder)
	if !ok {
		return
	}
	rec.mu.Lock()
	rec.stmts = append(rec.stmts, capStm{sql: db.Statement.SQL.String(), vars: append([]any(nil), db.Statement.Vars...)})
	rec.mu.Unlock()
}

// catalogShape describes the tables of schema as sorted text lines: columns
// (position, type, nullability, default), indexes, constraints, sequences.
func catalogShape(tx *gorm.DB, schema string) ([]string, error) {
	const q = `
SELECT 'col ' || c.relname || ' ' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1
UNION ALL
SELECT 'con ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1
UNION ALL
SELECT 'seq ' || c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind = 'S'
ORDER BY 1`
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, q, schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
