package integration_test

import (
	"context"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestExecScriptRoutesItsTenant: ExecScript with a tenant context outside
// RunInTenant routes the script's transaction to the tenant, as raw SQL is
// (a breaker's finding: both rows went to the shared schema's same-named
// table), inside the caller's transaction too, leaving the default path
// after it; a missing schema is ErrUnknownTenant; transaction control in a
// script is refused before anything is sent, inside RunInTenant too (its
// COMMIT ended RunInTenant's transaction).
func TestExecScriptRoutesItsTenant(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			db, p, _ := brTagTenantsOn(t, o.open, "", false, "acme")
			decoy(t, db)
			ctx := context.Background()
			acme := tenantplugin.WithTenant(ctx, "acme")
			names := func() []string {
				var out []string
				require.NoError(t, db.WithContext(acme).Raw("SELECT name FROM br_tags ORDER BY id").Scan(&out).Error)
				return out
			}
			require.NoError(t, tenantplugin.ExecScript(db.WithContext(acme), "INSERT INTO br_tags (name) VALUES ('one'); INSERT INTO br_tags (name) VALUES ('two')"))
			assert.Equal(t, []string{"tag of acme", "one", "two"}, names())

			var defaultPath, path string
			require.NoError(t, db.Raw("SELECT current_setting('search_path')").Scan(&defaultPath).Error)
			require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
				if err := tenantplugin.ExecScript(tx.WithContext(acme), "INSERT INTO br_tags (name) VALUES ('three'); SELECT 1"); err != nil {
					return err
				}
				return tx.Raw("SELECT current_setting('search_path')").Scan(&path).Error
			}))
			assert.Equal(t, defaultPath, path, "the caller's transaction after the script")
			assert.Equal(t, []string{"tag of acme", "one", "two", "three"}, names())

			err := tenantplugin.ExecScript(db.WithContext(tenantplugin.WithTenant(ctx, "ghost")), "INSERT INTO br_tags (name) VALUES ('x'); SELECT 1")
			assert.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

			for _, script := range []string{
				"BEGIN; INSERT INTO br_tags (name) VALUES ('x'); COMMIT; INSERT INTO br_tags (name) VALUES ('y')",
				"INSERT INTO br_tags (name) VALUES ('x'); COMMIT; INSERT INTO br_tags (name) VALUES ('y')",
			} {
				err := p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error { return tenantplugin.ExecScript(tx, script) })
				require.Error(t, err, script)
				assert.Contains(t, err.Error(), "may not contain")
				require.Error(t, tenantplugin.ExecScript(db.WithContext(acme), script), script)
			}
			assert.Equal(t, []string{"tag of acme", "one", "two", "three"}, names(), "nothing of the refused scripts ran")
			assert.Equal(t, int64(1), countOf(t, db, "SELECT count(*) FROM public.br_tags"), "nothing written to the shared table")
			// Function bodies are no transaction control.
			require.NoError(t, p.RunInTenant(ctx, "acme", func(tx *gorm.DB) error {
				return tenantplugin.ExecScript(tx, "CREATE FUNCTION tag_count() RETURNS bigint AS $$ BEGIN RETURN (SELECT count(*) FROM br_tags); END $$ LANGUAGE plpgsql; SELECT tag_count()")
			}))
		})
	}
}

// TestMigratorInsideTheCallersTransactionResetsItsPath: GORM's Migrator
// with a tenant context inside the caller's transaction sets that
// transaction's path to the tenant's for its own statements, then back to
// the default (a breaker's finding: it stayed, so raw SQL without a tenant
// read the tenant's table afterwards).
func TestMigratorInsideTheCallersTransactionResetsItsPath(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			db, _, _ := brTagTenantsOn(t, o.open, "", false, "acme")
			decoy(t, db)
			acme := tenantplugin.WithTenant(context.Background(), "acme")
			var names []string
			require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
				if !tx.WithContext(acme).Migrator().HasTable(&BrTag{}) {
					t.Error("HasTable for acme: false")
				}
				return tx.Raw("SELECT name FROM br_tags").Scan(&names).Error
			}))
			assert.Equal(t, []string{"DECOY"}, names, "raw SQL without a tenant after the Migrator, same transaction")
		})
	}
}

// TestScriptSyntaxErrorIsNotBlamedOnTheRoute: a routed script that does not
// parse fails with PostgreSQL's syntax error, not as the route statement's
// ("set search_path"): PostgreSQL parses the whole script before running
// the route (a breaker's finding).
func TestScriptSyntaxErrorIsNotBlamedOnTheRoute(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			db, _, _ := brTagTenantsOn(t, o.open, "", false, "acme")
			err := db.WithContext(tenantplugin.WithTenant(context.Background(), "acme")).Exec("SELECT 1; SELEC 2").Error
			require.Error(t, err)
			assert.Contains(t, err.Error(), "syntax error")
			assert.Contains(t, err.Error(), "acme")
			assert.NotContains(t, err.Error(), "set search_path")
		})
	}
}

// decoy puts a br_tags table with one row, DECOY, in the shared schema
// (after MigrateShared, which refuses shared tables named like tenant
// tables): a tenant's statement that escapes its path reads it.
func decoy(t *testing.T, db *gorm.DB) {
	t.Helper()
	require.NoError(t, db.Exec("CREATE TABLE public.br_tags (id serial PRIMARY KEY, name text); INSERT INTO public.br_tags (name) VALUES ('DECOY')").Error)
}

// TestMigratorErrorInsideTheCallersTransactionResetsItsPath: the path is
// put back after a Migrator call that fails on GORM's side (a field it
// cannot find: no SQL fails, the transaction stays usable), too (a
// breaker's finding).
func TestMigratorErrorInsideTheCallersTransactionResetsItsPath(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			db, _, _ := brTagTenantsOn(t, o.open, "", false, "acme")
			decoy(t, db)
			acme := tenantplugin.WithTenant(context.Background(), "acme")
			var names []string
			require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
				require.Error(t, tx.WithContext(acme).Migrator().AddColumn(&BrTag{}, "NoSuchField"))
				require.Error(t, tx.WithContext(acme).Migrator().AlterColumn(&BrTag{}, "NoSuchField"))
				return tx.Raw("SELECT name FROM br_tags").Scan(&names).Error
			}))
			assert.Equal(t, []string{"DECOY"}, names, "raw SQL without a tenant after the failed Migrator calls")
		})
	}
}
