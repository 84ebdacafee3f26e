package integration_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Raw SQL for a tenant whose schema does not exist must not fall through to
// a same-named table of the shared schema (PostgreSQL skips a search_path
// entry that names no schema).
func TestRawSQLForTenantWithoutSchemaFailsClosed(t *testing.T) {
	e := newEnv(t, 2)
	bg := context.Background()
	require.NoError(t, e.db.WithContext(bg).Exec(`CREATE TABLE public.fb_notes (id serial PRIMARY KEY, owner text)`).Error)
	t.Cleanup(func() { e.db.WithContext(bg).Exec(`DROP TABLE public.fb_notes`) })
	require.NoError(t, e.db.WithContext(bg).Exec(`INSERT INTO public.fb_notes (owner) VALUES ('shared')`).Error)

	ghost := e.as("ghost")
	var owners []string
	err := ghost.Raw("SELECT owner FROM fb_notes").Scan(&owners).Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	require.Contains(t, err.Error(), `"ghost"`)
	require.Empty(t, owners)

	err = ghost.Exec("UPDATE fb_notes SET owner = 'ghost'").Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

	// Inside the caller's transaction too.
	err = ghost.Transaction(func(tx *gorm.DB) error {
		return tx.Exec("UPDATE fb_notes SET owner = 'ghost'").Error
	})
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

	// Rows() and Row() as well.
	_, err = ghost.Raw("SELECT owner FROM fb_notes").Rows()
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	var one string
	err = ghost.Raw("SELECT owner FROM fb_notes").Row().Scan(&one)
	require.True(t, errors.Is(err, tenantplugin.ErrUnknownTenant), "got %v", err)

	require.Equal(t, []string{"shared"}, e.owners("public", "fb_notes"))
}
