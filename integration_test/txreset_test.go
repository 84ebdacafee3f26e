package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

var errRollbackTx = errors.New("roll back")

// TestRoutedStatementLeavesNothingInTheTransaction: inside the caller's
// transaction a routed raw statement's search_path and tenant role end with
// it (a breaker's findings): a GORM-built read of another tenant works with
// tenant roles, raw SQL for the shared schema runs as the login role, raw SQL
// without a tenant sees the default path, and a trigger fired by another
// tenant's GORM-built insert resolves its unqualified names on the default
// path, not in the previous tenant's schema.
func TestRoutedStatementLeavesNothingInTheTransaction(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) {
			for _, roles := range []bool{false, true} {
				t.Run(fmt.Sprintf("roles=%v", roles), func(t *testing.T) {
					db, _, _ := brTagTenantsOn(t, o.open, "CREATE TABLE public.audit (tag text)", roles, "acme", "globex")
					ctx := context.Background()
					tns := []string{"acme", "globex"}
					// A trigger function naming its table unqualified, on each
					// tenant's table: it writes into the audit table its path finds.
					require.NoError(t, db.Exec(`CREATE FUNCTION public.audit_tag() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (NEW.name); RETURN NEW; END $$`).Error)
					for _, tn := range tns {
						q := tenantplugin.QuoteIdentifier(tn)
						require.NoError(t, db.Exec(`CREATE TABLE `+q+`.audit (tag text); CREATE TRIGGER audit_tag AFTER INSERT ON `+q+`.br_tags FOR EACH ROW EXECUTE FUNCTION public.audit_tag()`).Error)
					}
					var loginRole, defaultPath string
					require.NoError(t, db.Raw("SELECT current_user, current_setting('search_path')").Row().Scan(&loginRole, &defaultPath))
					acme := tenantplugin.WithTenant(ctx, "acme")
					globex := tenantplugin.WithTenant(ctx, "globex")

					err := db.Transaction(func(tx *gorm.DB) error {
						var names []string
						require.NoError(t, tx.WithContext(acme).Raw("SELECT name FROM br_tags").Scan(&names).Error)
						require.Equal(t, []string{"tag of acme"}, names)

						var tags []BrTag
						require.NoError(t, tx.WithContext(globex).Find(&tags).Error, "GORM-built read of another tenant after a raw statement")
						require.Len(t, tags, 1)
						assert.Equal(t, "tag of globex", tags[0].Name)

						require.NoError(t, tx.WithContext(acme).Raw("SELECT name FROM br_tags").Scan(&names).Error)
						var user string
						require.NoError(t, tx.WithContext(tenantplugin.SharedOnly(ctx)).Raw("SELECT current_user").Scan(&user).Error)
						assert.Equal(t, loginRole, user, "raw SQL for the shared schema, after a tenant's")

						require.NoError(t, tx.WithContext(acme).Raw("SELECT name FROM br_tags").Scan(&names).Error)
						var path string
						require.NoError(t, tx.Raw("SELECT current_setting('search_path')").Scan(&path).Error)
						assert.Equal(t, defaultPath, path, "raw SQL without a tenant, after a tenant's")

						require.NoError(t, tx.WithContext(acme).Raw("SELECT name FROM br_tags").Scan(&names).Error)
						require.NoError(t, tx.WithContext(globex).Create(&BrTag{Name: "globex insert"}).Error)
						var inAcme int64
						require.NoError(t, tx.WithContext(acme).Raw("SELECT count(*) FROM audit").Scan(&inAcme).Error)
						assert.Zero(t, inAcme, "globex's trigger wrote into acme's table")
						return errRollbackTx
					})
					require.ErrorIs(t, err, errRollbackTx)
				})
			}
		})
	}
}

// TestRoutedExecInsideTransactionsReportsItsRows: the resets that follow a
// routed statement inside a transaction are not the statement: RowsAffected
// is the statement's (a script's: its last statement's, as database/sql
// reports it), on every pool configuration, and a script ending in a line
// comment still runs its resets.
func TestRoutedExecInsideTransactionsReportsItsRows(t *testing.T) {
	for _, c := range pipelineConfigs {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int64
			db := openCounting(t, c.viaOpen, c.dsnParams, c.prepareStmt, &writes)
			tn := pluginTenants(t, db, "rows", 1)[0]
			tctx := tenantplugin.WithTenant(context.Background(), tn)
			for i := 0; i < 3; i++ {
				require.NoError(t, db.WithContext(tctx).Create(&Poll{Question: "q", Owner: tn}).Error)
			}
			var defaultPath string
			require.NoError(t, db.Raw("SELECT current_setting('search_path')").Scan(&defaultPath).Error)
			for _, want := range []struct {
				sql  string
				rows int64
			}{
				{"UPDATE polls SET question = 'a'", 3},
				{"UPDATE polls SET question = 'b' WHERE id = 1; UPDATE polls SET question = 'c' WHERE id > 1", 2},
				{"UPDATE polls SET question = 'd' WHERE id = 1 -- the last line, a comment", 1},
				{"UPDATE polls SET question = 'd' WHERE id < 3; -- a script ending in a comment", 2},
			} {
				for range 2 { // the second time on prepared statements
					require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
						res := tx.WithContext(tctx).Exec(want.sql)
						if res.Error != nil {
							return res.Error
						}
						assert.Equal(t, want.rows, res.RowsAffected, want.sql)
						var path string
						require.NoError(t, tx.Raw("SELECT current_setting('search_path')").Scan(&path).Error)
						assert.Equal(t, defaultPath, path, want.sql)
						return nil
					}), want.sql)
				}
			}
		})
	}
}
