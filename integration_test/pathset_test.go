package integration_test

import (
	"context"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestLibraryTransactionContextOnTheAppDB: the context RunInTenant and a
// seed hand to their function says "this transaction already runs under the
// tenant's search_path". Used with the app's db (another connection, or
// after the transaction ended), statements are routed like any tenant
// context's (a breaker's finding: they ran unrouted, reading and writing a
// same-named table of the shared schema).
func TestLibraryTransactionContextOnTheAppDB(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			var seedCtx context.Context
			db, p, m := brEnvOn(t, o.open, "", []any{&BrTag{}}, nil, tenantplugin.WithSeed(func(tx *gorm.DB) error {
				seedCtx = tx.Statement.Context
				return tx.Create(&BrTag{Name: "seeded"}).Error
			}))
			ctx := context.Background()
			require.NoError(t, m.CreateTenant(ctx, "acme"))
			decoy(t, db)

			names := func(c context.Context) []string {
				var out []string
				require.NoError(t, db.WithContext(c).Raw("SELECT name FROM br_tags ORDER BY id").Scan(&out).Error)
				return out
			}
			var runCtx context.Context
			require.NoError(t, p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
				runCtx = tx.Statement.Context
				assert.Equal(t, []string{"seeded"}, names(runCtx), "the app's db, while RunInTenant runs")
				return db.WithContext(runCtx).Exec("INSERT INTO br_tags (name) VALUES ('from the app db')").Error
			}))
			assert.Equal(t, []string{"seeded", "from the app db"}, names(runCtx), "after RunInTenant returned")
			assert.Equal(t, []string{"seeded", "from the app db"}, names(seedCtx), "a seed's context after creation")
			var tags []BrTag
			require.NoError(t, db.WithContext(runCtx).Find(&tags).Error)
			assert.Len(t, tags, 2, "GORM-built statements too")
			assert.Equal(t, int64(1), countOf(t, db, "SELECT count(*) FROM public.br_tags"), "nothing written to the shared table")
		})
	}
}

// TestRoutedStatementInsideRunInTenantKeepsItsPath: inside RunInTenant for
// acme, a statement with a fresh context for acme runs on the path
// RunInTenant set, with no route of its own: a route and the resets after
// it would have put the default path back for the statements after it (a
// breaker's finding: they read the shared schema's same-named table).
func TestRoutedStatementInsideRunInTenantKeepsItsPath(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			for _, prepare := range []bool{false, true} {
				db, p, _ := brTagTenantsOn(t, o.open, "", false, "acme")
				decoy(t, db)
				ctx := context.Background()
				var got [][]string
				require.NoError(t, p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
					routed := tx
					if prepare {
						// A session of its own wraps the transaction anew (a
						// breaker's finding): still the same transaction.
						routed = tx.Session(&gorm.Session{PrepareStmt: true})
					}
					for _, c := range []*gorm.DB{routed.WithContext(tenantplugin.WithTenant(ctx, "acme")), tx, routed.WithContext(tenantplugin.WithTenant(ctx, "acme")), routed, tx} {
						var names []string
						if err := c.Raw("SELECT name FROM br_tags").Scan(&names).Error; err != nil {
							return err
						}
						got = append(got, names)
					}
					return nil
				}))
				want := []string{"tag of acme"}
				assert.Equal(t, [][]string{want, want, want, want, want}, got, "PrepareStmt=%v", prepare)
			}
		})
	}
}

// TestAutoMigrateInsideRunInTenantLeavesSharedTablesShared: GORM's
// Migrator inside RunInTenant (or a seed) treats shared tables as the
// shared schema's, as it does with a tenant context elsewhere: AutoMigrate
// of a tenant model that belongs to a shared one creates no copy of the
// shared table in the tenant's schema, and HasTable of a shared model is
// true (a breaker's finding: plans was copied into the tenant's schema and
// the foreign key pointed at the copy).
func TestAutoMigrateInsideRunInTenantLeavesSharedTablesShared(t *testing.T) {
	e := newEnv(t, 4)
	tn := e.tenant("amrun")
	q := tenantplugin.QuoteIdentifier(tn)
	require.NoError(t, e.db.Exec("DROP TABLE "+q+".choices, "+q+".poll_tags, "+q+".polls").Error)
	var hasPlan bool
	require.NoError(t, e.p.RunInTenant(context.Background(), tn, func(tx *gorm.DB) error {
		if err := tx.AutoMigrate(&Poll{}, &Plan{}); err != nil {
			return err
		}
		hasPlan = tx.Migrator().HasTable(&Plan{})
		return nil
	}))
	assert.True(t, hasPlan, "HasTable of the shared Plan inside RunInTenant")
	assert.Zero(t, e.count(tn, "polls"), "the tenant table is there again, empty")
	var copies int64
	require.NoError(t, e.db.Raw("SELECT count(*) FROM pg_tables WHERE schemaname = ? AND tablename = 'plans'", tn).Scan(&copies).Error)
	assert.Zero(t, copies, "no copy of the shared plans table in the tenant's schema")
}

// TestMigratorInsideRunInTenantLeavesSharedTablesAlone: changes that would
// reach a shared table through the tenant's path (DropColumn,
// AlterColumn, RenameColumn, DropIndex) are refused inside RunInTenant,
// naming the table, and change nothing (a breaker's finding: DropColumn of
// a shared model dropped the shared table's column).
func TestMigratorInsideRunInTenantLeavesSharedTablesAlone(t *testing.T) {
	e := newEnv(t, 4)
	tn := e.tenant("amshared")
	for name, call := range map[string]func(m gorm.Migrator) error{
		"DropColumn":   func(m gorm.Migrator) error { return m.DropColumn(&Plan{}, "name") },
		"AlterColumn":  func(m gorm.Migrator) error { return m.AlterColumn(&Plan{}, "Name") },
		"RenameColumn": func(m gorm.Migrator) error { return m.RenameColumn(&Plan{}, "name", "title") },
		"DropIndex":    func(m gorm.Migrator) error { return m.DropIndex(&Plan{}, "plans_pkey") },
	} {
		err := e.p.RunInTenant(context.Background(), tn, func(tx *gorm.DB) error { return call(tx.Migrator()) })
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), `"plans"`, name)
	}
	assert.True(t, e.db.WithContext(tenantplugin.SharedOnly(context.Background())).Migrator().HasColumn(&Plan{}, "name"), "the shared table keeps its column")
}
