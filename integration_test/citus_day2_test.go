package integration_test

import (
	"context"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCitusRenameAndCloneTenant: on a Citus coordinator with schema-based
// sharding, a renamed tenant keeps its rows and its worker, and a clone is a
// distributed tenant holding the template's rows (TENANTPLUGIN_CITUS_URL;
// skipped without it).
func TestCitusRenameAndCloneTenant(t *testing.T) {
	ce := newCitusEnv(t)
	ctx := context.Background()
	a, b, c := ce.name("ra"), ce.name("rb"), ce.name("rc")
	require.NoError(t, ce.m.CreateTenant(ctx, a))
	require.NoError(t, ce.as(a).Create(&[]CitusNote{{Body: "x", Code: "c1", Owner: a}, {Body: "y", Code: "c2", Owner: a}}).Error)
	node, err := ce.m.TenantNode(ctx, a)
	require.NoError(t, err)
	require.NotEmpty(t, node, "the tenant is distributed")

	require.NoError(t, ce.m.RenameTenant(ctx, a, b))
	var notes []CitusNote
	require.NoError(t, ce.as(b).Order("id").Find(&notes).Error)
	require.Len(t, notes, 2)
	after, err := ce.m.TenantNode(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, node, after, "the renamed tenant stays on its worker")
	_, err = ce.m.TenantNode(ctx, a)
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

	require.NoError(t, ce.m.CloneTenant(ctx, b, c))
	var cloned []CitusNote
	require.NoError(t, ce.as(c).Order("id").Find(&cloned).Error)
	assert.Equal(t, notes, cloned)
	cnode, err := ce.m.TenantNode(ctx, c)
	require.NoError(t, err)
	assert.NotEmpty(t, cnode, "the clone is distributed")
	next := CitusNote{Body: "z", Code: "c3", Owner: c}
	require.NoError(t, ce.as(c).Create(&next).Error)
	assert.Equal(t, notes[1].ID+1, next.ID, "the clone's sequence continues after the copied rows")
	rep, err := ce.m.MigrateTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.UpToDate, rep.String())
}
