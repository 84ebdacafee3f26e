package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Findings of a newcomer who tried to break the library, turned into tests.
// Each runs in a database of its own: they put leftovers in public.

type BrTag struct {
	ID   uint
	Name string
}

type BrTicket struct {
	ID      uint
	Subject string
}

func (BrTicket) TableName() string { return "tickets" }

// brEnv opens a scratch database with setup SQL and a plugin for models.
func brEnv(t *testing.T, setup string, models []any, popts []tenantplugin.Option, mopts ...tenantplugin.MigratorOption) (*gorm.DB, *tenantplugin.Plugin, *tenantplugin.Migrator) {
	t.Helper()
	return brEnvOn(t, openTenantplugin, setup, models, popts, mopts...)
}

// openers are the two ways to open GORM on PostgreSQL: the design card's
// postgres.Open and tenantplugin.Open.
var openers = []struct {
	name string
	open func(dsn string) gorm.Dialector
}{
	{"postgres.Open", func(dsn string) gorm.Dialector { return postgres.Open(dsn) }},
	{"tenantplugin.Open", openTenantplugin},
}

func openTenantplugin(dsn string) gorm.Dialector { return tenantplugin.Open(dsn) }

// brEnvOn is brEnv opened with open.
func brEnvOn(t *testing.T, open func(string) gorm.Dialector, setup string, models []any, popts []tenantplugin.Option, mopts ...tenantplugin.MigratorOption) (*gorm.DB, *tenantplugin.Plugin, *tenantplugin.Migrator) {
	t.Helper()
	db, err := gorm.Open(open(extDatabase(t, setup, nil)), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { closeDB(db) })
	p := tenantplugin.New(append([]tenantplugin.Option{tenantplugin.WithTenantModels(models...)}, popts...)...)
	require.NoError(t, db.Use(p))
	m := p.Migrator(mopts...)
	require.NoError(t, m.MigrateShared(context.Background()))
	return db, p, m
}

// brTagTenants is brEnv for BrTag with tenants (each holding one tag, "tag
// of <tenant>"), with tenant roles when roles is set (the roles dropped at
// cleanup).
func brTagTenants(t *testing.T, setup string, roles bool, tenants ...string) (*gorm.DB, *tenantplugin.Plugin, *tenantplugin.Migrator) {
	t.Helper()
	return brTagTenantsOn(t, openTenantplugin, setup, roles, tenants...)
}

// brTagTenantsOn is brTagTenants opened with open.
func brTagTenantsOn(t *testing.T, open func(string) gorm.Dialector, setup string, roles bool, tenants ...string) (*gorm.DB, *tenantplugin.Plugin, *tenantplugin.Migrator) {
	t.Helper()
	var popts []tenantplugin.Option
	if roles {
		popts = append(popts, tenantplugin.WithTenantRoles())
	}
	db, p, m := brEnvOn(t, open, setup, []any{&BrTag{}}, popts)
	ctx := context.Background()
	for _, tn := range tenants {
		require.NoError(t, m.CreateTenant(ctx, tn))
		require.NoError(t, db.WithContext(tenantplugin.WithTenant(ctx, tn)).Create(&BrTag{Name: "tag of " + tn}).Error)
	}
	if roles {
		t.Cleanup(func() {
			for _, tn := range tenants {
				_ = m.DropTenant(ctx, tn)
			}
			shared := tenantplugin.QuoteIdentifier(tenantplugin.SharedAccessRoleName(dbName(t, db)))
			db.Exec("DROP OWNED BY " + shared)
			db.Exec("DROP ROLE IF EXISTS " + shared)
		})
	}
	return db, p, m
}

func countOf(t *testing.T, db *gorm.DB, q string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw(q).Scan(&n).Error)
	return n
}

// Finding 1: inside a transaction the library routed once (RunInTenant, a
// seed, a migration), a raw statement for another tenant would change the
// path of every statement after it. It is refused; GORM-built reads of the
// other tenant (qualified) work and leave the path alone.
func TestRawStatementForAnotherTenantInsideRunInTenantIsRefused(t *testing.T) {
	for _, roles := range []bool{false, true} {
		t.Run(fmt.Sprintf("roles=%v", roles), func(t *testing.T) {
			db, p, _ := brTagTenants(t, "", roles, "acme", "globex")
			ctx := context.Background()
			globex := tenantplugin.WithTenant(ctx, "globex")
			err := p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
				var names []string
				return tx.WithContext(globex).Raw("SELECT name FROM br_tags").Scan(&names).Error
			})
			require.ErrorIs(t, err, tenantplugin.ErrCrossTenant)
			assert.Contains(t, err.Error(), `inside the transaction of "acme"`)

			if roles {
				// Under tenant roles another tenant's schema is out of
				// reach even GORM-built: the role guard at work.
				err = p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
					return tx.WithContext(globex).Find(&[]BrTag{}).Error
				})
				require.Error(t, err)
				assert.Contains(t, err.Error(), "permission denied for schema globex")
			}
			// The supported way: read the other tenant GORM-built, write raw.
			err = p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
				if roles {
					return tx.Exec("INSERT INTO br_tags (name) VALUES ('tag of globex (copy)')").Error
				}
				var other []BrTag
				if err := tx.WithContext(globex).Find(&other).Error; err != nil {
					return err
				}
				for _, o := range other {
					if err := tx.Exec("INSERT INTO br_tags (name) VALUES (?)", o.Name+" (copy)").Error; err != nil {
						return err
					}
				}
				return nil
			})
			if roles {
				var who string
				require.NoError(t, p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
					return tx.Raw("SELECT current_user").Scan(&who).Error
				}))
				assert.Equal(t, tenantplugin.RoleName(dbName(t, db), "acme"), who)
			}
			require.NoError(t, err)
			assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM acme.br_tags WHERE name = 'tag of globex (copy)'`))
			assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM globex.br_tags`), "globex untouched")
		})
	}
}

func dbName(t *testing.T, db *gorm.DB) string {
	var n string
	require.NoError(t, db.Raw("SELECT current_database()").Scan(&n).Error)
	return n
}

// The same in a seed: refused, and the new tenant is not created.
func TestSeedCannotRouteAnotherTenant(t *testing.T) {
	seed := tenantplugin.WithSeed(func(tx *gorm.DB) error {
		tmpl := tenantplugin.WithTenant(tx.Statement.Context, "template")
		var n int64
		return tx.WithContext(tmpl).Raw("SELECT count(*) FROM br_tags").Scan(&n).Error
	})
	db, p, _ := brEnv(t, "", []any{&BrTag{}}, nil)
	ctx := context.Background()
	require.NoError(t, p.Migrator().CreateTenant(ctx, "template"))
	err := p.Migrator(seed).CreateTenant(ctx, "acme")
	require.ErrorIs(t, err, tenantplugin.ErrCrossTenant)
	assert.EqualValues(t, 0, countOf(t, db, `SELECT count(*) FROM pg_namespace WHERE nspname = 'acme'`))
}

// Finding 2: a new tenant's schema is empty when its migrations run; raw
// SQL there must not reach a same-named table of the shared schema.
func TestMigrationsOfANewTenantNeverReachTheSharedSchema(t *testing.T) {
	leftover := `CREATE TABLE public.tasks (id bigserial primary key, subject text); INSERT INTO public.tasks (subject) VALUES ('legacy')`
	rename := &gormigrate.Migration{ID: "0002_tasks_to_tickets", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("ALTER TABLE IF EXISTS tasks RENAME TO tickets").Error
	}}
	cleanup := &gormigrate.Migration{ID: "0005_drop_tasks", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("DROP TABLE IF EXISTS tasks").Error
	}}
	for _, slow := range []bool{false, true} {
		opts := []tenantplugin.MigratorOption{tenantplugin.WithPreMigrations(rename), tenantplugin.WithMigrations(cleanup)}
		if slow {
			opts = append(opts, tenantplugin.WithAutoMigrateCreate())
		}
		db, _, m := brEnv(t, leftover, []any{&BrTicket{}}, nil, opts...)
		ctx := context.Background()
		require.NoError(t, m.CreateTenant(ctx, "acme"))
		_, err := m.Migrate(ctx)
		require.NoError(t, err, "the next start-up finds no shadow")
		assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM public.tasks`), "the leftover and its row are untouched (slow=%v)", slow)
		assert.EqualValues(t, 0, countOf(t, db, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tickets'`))
		// Shared tables are still reachable in migrations, named with their schema.
		read := &gormigrate.Migration{ID: "0006_read_shared", Migrate: func(tx *gorm.DB) error {
			var n int64
			return tx.Raw("SELECT count(*) FROM public.tasks").Scan(&n).Error
		}}
		require.NoError(t, db.Error)
		_, err = m.Plugin().Migrator(append(opts, tenantplugin.WithMigrations(read))...).MigrateTenants(ctx)
		require.NoError(t, err)
	}
}

// Finding 3: GORM's DropTable sends DROP TABLE ... CASCADE, which follows
// dependencies out of the tenant. In a migration and in RunInTenant it is
// refused while anything outside depends on the tenant's schema.
func TestDropTableCannotCascadeOutOfTheTenant(t *testing.T) {
	type BrLegacy struct{ ID uint }
	drop := &gormigrate.Migration{ID: "0003_drop_legacy", Migrate: func(tx *gorm.DB) error {
		return tx.Migrator().DropTable("br_legacies")
	}}
	db, p, m := brEnv(t, "", []any{&BrTag{}, &BrLegacy{}}, nil)
	ctx := context.Background()
	require.NoError(t, m.CreateTenant(ctx, "acme"))
	require.NoError(t, m.CreateTenant(ctx, "globex"))
	require.NoError(t, db.Exec(`CREATE VIEW public.legacy_report AS SELECT count(*) AS n FROM acme.br_legacies`).Error)

	rep, err := p.Migrator(tenantplugin.WithMigrations(drop)).MigrateTenants(ctx)
	require.ErrorIs(t, err, tenantplugin.ErrDependentObjects)
	assert.Equal(t, 1, rep.Failed, "acme, tied to the view, fails; globex migrates")
	assert.Contains(t, err.Error(), "legacy_report")
	assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM pg_views WHERE viewname = 'legacy_report'`), "the shared view survives")
	assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM pg_tables WHERE schemaname = 'acme' AND tablename = 'br_legacies'`))

	// RunInTenant: a foreign key from another tenant's schema.
	require.NoError(t, db.Exec(`DROP VIEW public.legacy_report; CREATE TABLE globex.refs (id int REFERENCES acme.br_tags (id))`).Error)
	err = p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error { return tx.Migrator().DropTable(&BrTag{}) })
	require.ErrorIs(t, err, tenantplugin.ErrDependentObjects)
	assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM pg_constraint WHERE conrelid = 'globex.refs'::regclass AND contype = 'f'`), "globex's key survives")

	// A raw DROP ... CASCADE in a migration is caught after the fact: the
	// tenant is rolled back.
	require.NoError(t, db.Exec(`CREATE VIEW public.tag_report AS SELECT count(*) AS n FROM globex.br_tags`).Error)
	raw := &gormigrate.Migration{ID: "0004_raw_cascade", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("DROP TABLE br_tags CASCADE").Error
	}}
	_, err = p.Migrator(tenantplugin.WithMigrations(drop, raw)).MigrateTenant(ctx, "globex")
	require.ErrorIs(t, err, tenantplugin.ErrDependentObjects)
	assert.Contains(t, err.Error(), "dropped objects outside")
	assert.EqualValues(t, 1, countOf(t, db, `SELECT count(*) FROM pg_views WHERE viewname = 'tag_report'`))
}

// Finding 4: a script that sets session settings leaves none on the pooled
// connection.
func TestScriptLeavesNoSessionSettings(t *testing.T) {
	db, p, m := brEnv(t, "", []any{&BrTag{}}, nil)
	ctx := context.Background()
	require.NoError(t, m.CreateTenant(ctx, "acme"))
	sqlDB, err := db.DB()
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(1)
	var before string
	require.NoError(t, db.Raw("SHOW search_path").Scan(&before).Error)
	err = p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
		if err := tenantplugin.ExecScript(tx, `SET search_path TO acme; SELECT pg_catalog.set_config('statement_timeout', '1234', false); INSERT INTO br_tags (name) VALUES ('from script')`); err != nil {
			return err
		}
		return tx.Exec("INSERT INTO br_tags (name) VALUES ('after script')").Error
	})
	require.NoError(t, err)
	var path, timeout string
	require.NoError(t, db.Raw("SHOW search_path").Scan(&path).Error)
	require.NoError(t, db.Raw("SHOW statement_timeout").Scan(&timeout).Error)
	assert.Equal(t, before, path, "the pooled connection is back on its default path")
	assert.Equal(t, "0", timeout)
	assert.EqualValues(t, 2, countOf(t, db, `SELECT count(*) FROM acme.br_tags`))
}

// Finding 5: errors that say what to do.
func TestNewcomerErrors(t *testing.T) {
	ctx := context.Background()
	db, err := gorm.Open(tenantplugin.Open(extDatabase(t, "", nil)), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	defer closeDB(db)
	p := tenantplugin.New(tenantplugin.WithTenantModels(&BrTag{}))
	require.NoError(t, db.Use(p))
	err = p.Migrator().CreateTenant(ctx, "acme")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run Migrate (or MigrateShared)")
	_, err = p.Migrator().Tenants(ctx)
	assert.Contains(t, err.Error(), "run Migrate (or MigrateShared)")

	type BrSharedItem struct{ ID uint }
	type BrTenantItem struct{ ID uint }
	two, err := gorm.Open(tenantplugin.Open(server.URL), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	defer closeDB(two)
	err = two.Use(tenantplugin.New(tenantplugin.WithSharedModels(&BrSharedItem{}),
		tenantplugin.WithTenantModels(&brSameTable{})))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "shared model BrSharedItem")

	err = two.Use(tenantplugin.New(tenantplugin.WithSharedSchema("Core")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid shared schema name "Core"`)
	_ = BrTenantItem{}
}

type brSameTable struct{ ID uint }

func (brSameTable) TableName() string { return "br_shared_items" }
