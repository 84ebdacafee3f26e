package tenantplugin

import (
	"context"
	"fmt"
)

// GuardDefaultSearchPath sets the current role's default search_path in the
// current database to empty (ALTER ROLE CURRENT_USER IN DATABASE ... SET
// search_path TO ”). New sessions then resolve no unqualified table name at
// all: SQL that bypasses the plugin (a raw statement run without a tenant, a
// forgotten code path, a connection opened elsewhere with the same role)
// fails with "relation does not exist" instead of reading the shared schema.
// Everything the plugin routes keeps working: GORM-built statements are
// qualified and raw statements run under a search_path the plugin sets.
//
// Strength: it guards against routing mistakes, not against an attacker who
// can run SQL (any session may SET search_path). It takes effect for new
// connections; existing ones keep their setting until they reconnect. Undo
// with UnguardDefaultSearchPath.
func (p *Plugin) GuardDefaultSearchPath(ctx context.Context) error {
	return p.alterRoleSearchPath(ctx, "SET search_path TO ''")
}

// UnguardDefaultSearchPath removes the setting GuardDefaultSearchPath made.
func (p *Plugin) UnguardDefaultSearchPath(ctx context.Context) error {
	return p.alterRoleSearchPath(ctx, "RESET search_path")
}

func (p *Plugin) alterRoleSearchPath(ctx context.Context, action string) error {
	if p.db == nil {
		return ErrNotRegistered
	}
	var dbName string
	row := p.rootPool.QueryRowContext(ctx, "SELECT pg_catalog.current_database()")
	if err := row.Scan(&dbName); err != nil {
		return fmt.Errorf("tenantplugin: guard search_path: %w", err)
	}
	stmt := "ALTER ROLE CURRENT_USER IN DATABASE " + QuoteIdentifier(dbName) + " " + action
	if _, err := p.rootPool.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("tenantplugin: guard search_path: %w", err)
	}
	return nil
}
