package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

var sharedN atomic.Int64

// isolatedEnv has a shared schema (hence a tenant registry) of its own, so
// that MigrateTenants sees only the tenants the test creates.
type isolatedEnv struct {
	*env
	shared string
}

func newIsolatedEnv(t testing.TB, maxConns int, opts ...tenantplugin.MigratorOption) *isolatedEnv {
	t.Helper()
	shared := fmt.Sprintf("shared_%d", sharedN.Add(1))
	db, err := server.Open(maxConns, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	p := testPlugin(shared)
	require.NoError(t, db.Use(p))
	m := p.Migrator(opts...)
	require.NoError(t, m.MigrateShared(context.Background()))
	return &isolatedEnv{env: &env{t: t, db: db, p: p, m: m}, shared: shared}
}

// createTenants creates n tenants named <prefix><NN>_<shared> in one bulk run.
func (e *isolatedEnv) createTenants(prefix string, n int) []string {
	e.t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%02d_%s", prefix, i, e.shared)
	}
	rep, err := e.m.CreateTenants(context.Background(), names)
	require.NoError(e.t, err)
	require.Equal(e.t, n, rep.Migrated, rep.String())
	return names
}

// catalog describes a schema's tables, columns, types, defaults, indexes and
// constraints, with the schema's own name replaced by $S.
func (e *env) catalog(schema string) string {
	e.t.Helper()
	var lines []string
	q := `
SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type || ' ' ||
       coalesce(character_maximum_length::text, '-') || ' ' || is_nullable || ' ' || coalesce(column_default, '-')
  FROM information_schema.columns WHERE table_schema = $1
UNION ALL
SELECT 'idx ' || tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = $1
UNION ALL
SELECT 'con ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1
UNION ALL
SELECT 'seq ' || sequence_name || ' ' || data_type FROM information_schema.sequences WHERE sequence_schema = $1
ORDER BY 1`
	sqlDB, err := e.db.DB()
	require.NoError(e.t, err)
	rows, err := sqlDB.Query(q, schema)
	require.NoError(e.t, err)
	defer rows.Close()
	for rows.Next() {
		var l string
		require.NoError(e.t, rows.Scan(&l))
		lines = append(lines, strings.ReplaceAll(l, schema, "$S"))
	}
	require.NoError(e.t, rows.Err())
	require.NotEmpty(e.t, lines, "schema %s is empty", schema)
	return strings.Join(lines, "\n")
}

func (e *env) schemaExists(name string) bool {
	e.t.Helper()
	var ok bool
	require.NoError(e.t, e.db.Raw("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ?)", name).Scan(&ok).Error)
	return ok
}

func addNoteColumn(id string) *gormigrate.Migration {
	return &gormigrate.Migration{ID: id, Migrate: func(tx *gorm.DB) error {
		return tx.Exec("ALTER TABLE polls ADD COLUMN IF NOT EXISTS note text").Error
	}}
}

func TestCreateTenantFastEqualsAutoMigrate(t *testing.T) {
	migs := []*gormigrate.Migration{addNoteColumn("001_note")}
	e := newIsolatedEnv(t, 4, tenantplugin.WithMigrations(migs...))
	slow := e.p.Migrator(tenantplugin.WithMigrations(migs...), tenantplugin.WithAutoMigrateCreate())
	ctx := context.Background()
	fast, auto := "fast_"+e.shared, "auto_"+e.shared
	require.NoError(t, e.m.CreateTenant(ctx, fast))
	require.NoError(t, slow.CreateTenant(ctx, auto))
	fc, ac := e.catalog(fast), e.catalog(auto)
	assert.Equal(t, ac, fc)
	assert.Contains(t, fc, "col polls.note text")
	assert.Contains(t, fc, "FOREIGN KEY (plan_id) REFERENCES "+e.shared+".plans(id)", "the FK goes to the shared table")
	// No copy of the shared table inside the tenant.
	assert.NotContains(t, fc, "col plans.")
	// The new tenants are usable and up to date.
	rep, err := e.m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.UpToDate, rep.String())
}

func TestCreateAndDropTenant(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	name := "life_" + e.shared
	require.NoError(t, e.m.CreateTenant(ctx, name))
	assert.True(t, e.schemaExists(name))
	names, err := e.m.Tenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{name}, names)

	err = e.m.CreateTenant(ctx, name)
	require.ErrorIs(t, err, tenantplugin.ErrTenantExists)
	assert.Contains(t, err.Error(), name)

	require.ErrorIs(t, e.m.CreateTenant(ctx, e.shared), tenantplugin.ErrInvalidTenantName, "the shared schema is no tenant")
	require.ErrorIs(t, e.m.DropTenant(ctx, e.shared), tenantplugin.ErrInvalidTenantName)
	require.ErrorIs(t, e.m.DropTenant(ctx, "public"), tenantplugin.ErrInvalidTenantName)
	assert.True(t, e.schemaExists(e.shared))

	require.NoError(t, e.as(name).Create(&Poll{Question: "x", Owner: name}).Error)
	require.NoError(t, e.m.DropTenant(ctx, name))
	assert.False(t, e.schemaExists(name))
	names, err = e.m.Tenants(ctx)
	require.NoError(t, err)
	assert.Empty(t, names)
	require.ErrorIs(t, e.m.DropTenant(ctx, name), tenantplugin.ErrUnknownTenant)
	require.ErrorIs(t, e.as(name).Find(&[]Poll{}).Error, tenantplugin.ErrUnknownTenant)
}

// TestCreateTenantIsAtomic: a failing migration leaves no schema, no tables
// and no registry row.
func TestCreateTenantIsAtomic(t *testing.T) {
	boom := &gormigrate.Migration{ID: "boom", Migrate: func(tx *gorm.DB) error {
		if err := tx.Create(&Tag{Name: "before failing"}).Error; err != nil {
			return err
		}
		return errors.New("boom")
	}}
	e := newIsolatedEnv(t, 2, tenantplugin.WithMigrations(boom))
	name := "atomic_" + e.shared
	err := e.m.CreateTenant(context.Background(), name)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "boom")
	assert.Contains(t, err.Error(), name)
	assert.False(t, e.schemaExists(name))
	names, err := e.m.Tenants(context.Background())
	require.NoError(t, err)
	assert.Empty(t, names)
	// The name is free again.
	ok := newIsolatedEnv(t, 2)
	require.NoError(t, ok.m.CreateTenant(context.Background(), name))
}

// TestMigrationsAreRoutedToTheirTenant: inside a migration, GORM-built and raw
// statements reach the tenant being migrated.
func TestMigrationsAreRoutedToTheirTenant(t *testing.T) {
	var seen sync.Map
	mig := &gormigrate.Migration{ID: "routed", Migrate: func(tx *gorm.DB) error {
		name, ok := tenantplugin.FromContext(tx.Statement.Context)
		if !ok {
			return errors.New("no tenant in migration context")
		}
		seen.Store(name, true)
		if err := tx.Create(&Tag{Name: "gorm", Owner: name}).Error; err != nil {
			return err
		}
		return tx.Exec("INSERT INTO tags (name, owner) VALUES ('raw', current_schema())").Error
	}}
	e := newIsolatedEnv(t, 4, tenantplugin.WithMigrations(mig))
	ctx := context.Background()
	var names []string
	for i := 0; i < 3; i++ {
		n := fmt.Sprintf("routed%d_%s", i, e.shared)
		names = append(names, n)
		require.NoError(t, e.m.CreateTenant(ctx, n))
	}
	for _, n := range names {
		_, ok := seen.Load(n)
		assert.True(t, ok)
		assert.Equal(t, []string{n}, e.owners(n, "tags"))
		assert.EqualValues(t, 2, e.count(n, "tags"))
		assert.EqualValues(t, 1, e.count(n, "tenantplugin_migrations"))
	}
	// The bookkeeping table is per tenant, not in the shared schema.
	assert.False(t, e.db.Migrator().HasTable(e.shared+".tenantplugin_migrations"))
}

// TestOneFailingTenantOfFifty: a migration fails for exactly one of 50
// tenants; the other 49 are migrated, the failed one is unchanged, and a
// second run completes it.
func TestOneFailingTenantOfFifty(t *testing.T) {
	base := []*gormigrate.Migration{addNoteColumn("001_note")}
	e := newIsolatedEnv(t, 6, tenantplugin.WithMigrations(base...), tenantplugin.WithConcurrency(4))
	ctx := context.Background()
	names := e.createTenants("f", 50)
	victim := names[17]
	before := e.catalog(victim)

	fail := atomic.Bool{}
	fail.Store(true)
	second := &gormigrate.Migration{ID: "002_votes_index", Migrate: func(tx *gorm.DB) error {
		if err := tx.Exec("CREATE INDEX idx_choices_votes ON choices (votes)").Error; err != nil {
			return err
		}
		if name, _ := tenantplugin.FromContext(tx.Statement.Context); name == victim && fail.Load() {
			return errors.New("disk quota exceeded (simulated)")
		}
		return nil
	}}
	var events []tenantplugin.Progress
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	logProgress := tenantplugin.SlogProgress(logger)
	m2 := e.p.Migrator(tenantplugin.WithMigrations(append(base, second)...), tenantplugin.WithConcurrency(4),
		tenantplugin.WithProgress(func(p tenantplugin.Progress) { events = append(events, p); logProgress(p) }))

	rep, err := m2.MigrateTenants(ctx)
	require.Error(t, err)
	var runErr *tenantplugin.RunError
	require.ErrorAs(t, err, &runErr)
	var te *tenantplugin.TenantError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, victim, te.Tenant)
	assert.Contains(t, err.Error(), "disk quota exceeded")
	assert.Equal(t, 49, rep.Migrated, rep.String())
	assert.Equal(t, 1, rep.Failed)
	require.Len(t, rep.Failures(), 1)
	assert.Equal(t, victim, rep.Failures()[0].Tenant)
	assert.Equal(t, before, e.catalog(victim), "the failed tenant changed")
	for _, n := range names {
		if n != victim {
			assert.Contains(t, e.catalog(n), "idx_choices_votes")
		}
	}
	// Progress: one event per tenant, done counting up to the total.
	require.Len(t, events, 50)
	assert.Equal(t, 50, events[49].Done)
	assert.Equal(t, 50, events[49].Total)
	assert.Contains(t, logBuf.String(), "tenant failed")
	assert.Contains(t, logBuf.String(), victim)
	assert.Contains(t, logBuf.String(), "done=50 total=50")

	fail.Store(false)
	rep, err = m2.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Migrated, rep.String())
	assert.Equal(t, 49, rep.UpToDate)
	assert.Contains(t, e.catalog(victim), "idx_choices_votes")
}

// TestNothingToDoCostsOneQuery: with every tenant up to date, MigrateTenants
// sends a number of statements that does not grow with the tenant count.
func TestNothingToDoCostsOneQuery(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	ctx := context.Background()
	e.createTenants("n", 30)
	m := e.p.Migrator() // a new migrator, as at start-up
	before := server.Counter.Count()
	rep, err := m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30, rep.UpToDate)
	sent := server.Counter.Count() - before
	t.Logf("statements sent to find 30 tenants up to date: %d", sent)
	// The DDL capture transaction is a fixed number of statements, plus
	// one registry query; nothing per tenant.
	assert.Less(t, sent, int64(30))

	// WithForce runs the real AutoMigrate everywhere and finds nothing.
	rep, err = e.p.Migrator(tenantplugin.WithForce()).MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30, rep.Migrated)
}

func TestPanickingMigrationIsReported(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	ctx := context.Background()
	names := []string{"pa_" + e.shared, "pb_" + e.shared, "pc_" + e.shared}
	_, err := e.m.CreateTenants(ctx, names)
	require.NoError(t, err)
	mig := &gormigrate.Migration{ID: "panics", Migrate: func(tx *gorm.DB) error {
		if n, _ := tenantplugin.FromContext(tx.Statement.Context); n == names[1] {
			panic("nil map write (simulated)")
		}
		return nil
	}}
	rep, err := e.p.Migrator(tenantplugin.WithMigrations(mig)).MigrateTenants(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panic: nil map write")
	assert.Equal(t, 2, rep.Migrated)
	require.Len(t, rep.Failures(), 1)
	assert.Equal(t, names[1], rep.Failures()[0].Tenant)
}

func TestCancelledRunStopsCleanly(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	ctx := context.Background()
	e.createTenants("c", 12)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := e.p.Migrator(tenantplugin.WithForce(), tenantplugin.WithConcurrency(1),
		tenantplugin.WithProgress(func(p tenantplugin.Progress) {
			if p.Done == 3 {
				cancel()
			}
		}))
	rep, err := m.MigrateTenants(runCtx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 3, rep.Migrated, rep.String())
	assert.Equal(t, 9, rep.Skipped)
	assert.Equal(t, 0, rep.Failed)
	// Nothing half-done: a new run migrates everything cleanly.
	rep, err = e.p.Migrator(tenantplugin.WithForce()).MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 12, rep.Migrated)
}

// TestTwoMigratorsRace: two instances starting at once never migrate the same
// schema at the same time; each migration runs exactly once per tenant.
func TestTwoMigratorsRace(t *testing.T) {
	e := newIsolatedEnv(t, 4)
	ctx := context.Background()
	names := e.createTenants("r", 10)

	var running, maxRunning sync.Map // tenant -> *atomic.Int32
	mig := &gormigrate.Migration{ID: "once", Migrate: func(tx *gorm.DB) error {
		n, _ := tenantplugin.FromContext(tx.Statement.Context)
		c, _ := running.LoadOrStore(n, new(atomic.Int32))
		now := c.(*atomic.Int32).Add(1)
		defer c.(*atomic.Int32).Add(-1)
		mx, _ := maxRunning.LoadOrStore(n, new(atomic.Int32))
		if now > mx.(*atomic.Int32).Load() {
			mx.(*atomic.Int32).Store(now)
		}
		return tx.Create(&Tag{Name: "once", Owner: n}).Error
	}}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			db, err := server.Open(4, nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer func() { s, _ := db.DB(); s.Close() }()
			p := testPlugin(e.shared)
			if err := db.Use(p); err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = p.Migrator(tenantplugin.WithMigrations(mig)).Migrate(ctx)
		}(i)
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	for _, n := range names {
		var c int64
		require.NoError(t, e.as(n).Model(&Tag{}).Where("name = ?", "once").Count(&c).Error)
		assert.EqualValues(t, 1, c, "tenant %s migrated %d times", n, c)
		mx, _ := maxRunning.Load(n)
		assert.EqualValues(t, 1, mx.(*atomic.Int32).Load())
	}

	// Two racing creations of one name: exactly one wins.
	var created, exists atomic.Int32
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.m.CreateTenant(ctx, "dup_"+e.shared)
			switch {
			case err == nil:
				created.Add(1)
			case errors.Is(err, tenantplugin.ErrTenantExists):
				exists.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 1, created.Load())
	assert.EqualValues(t, 1, exists.Load())
}

// TestForcedAutoMigrateChangesNothing: AutoMigrate over an up-to-date tenant
// (the migrator answers GORM's catalog questions from pg_catalog) sends no
// DDL and leaves the catalog as it was.
func TestForcedAutoMigrateChangesNothing(t *testing.T) {
	e := newIsolatedEnv(t, 2)
	ctx := context.Background()
	name := "force_" + e.shared
	require.NoError(t, e.m.CreateTenant(ctx, name))
	before := e.catalog(name)
	m := e.p.Migrator(tenantplugin.WithForce())
	_, err := m.CreateTenants(ctx, nil) // the one-off DDL capture, outside the count
	require.NoError(t, err)
	server.Counter.Record()
	st, err := m.MigrateTenant(ctx, name)
	sent := server.Counter.Take()
	require.NoError(t, err)
	assert.Equal(t, tenantplugin.StateMigrated, st)
	for _, s := range sent {
		u := strings.ToUpper(strings.TrimSpace(s))
		assert.False(t, strings.HasPrefix(u, "ALTER") || strings.HasPrefix(u, "CREATE") || strings.HasPrefix(u, "DROP"), "DDL sent: %s", s)
	}
	assert.Equal(t, before, e.catalog(name))
}
