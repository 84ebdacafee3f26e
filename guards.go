package tenantplugin

import (
	"context"
	"fmt"
	"strings"
)

// GuardDefaultSearchPath sets the current role's default search_path in the
// current database to the extension schemas (WithExtensionSchemas), or to
// nothing when there are none:
//
//	ALTER ROLE CURRENT_USER IN DATABASE db SET search_path TO extensions
//
// New sessions then resolve no unqualified table of the application: SQL
// that bypasses the plugin (a raw statement run without a tenant, a
// forgotten code path, a connection opened elsewhere with the same role)
// fails with "relation does not exist" instead of reading the shared schema,
// while the types, functions and operators of the extension schemas stay
// visible to every statement. Everything the plugin routes keeps working:
// GORM-built statements are qualified and raw statements run under a
// search_path the plugin sets.
//
// It refuses (and changes nothing) when the promise cannot hold: an
// extension installed outside the extension schemas (its objects would
// vanish from GORM-built statements), or an extension schema holding tables
// that are not an extension's own (extension member tables, such as
// PostGIS's spatial_ref_sys, stay visible by design).
//
// Strength: it guards against routing mistakes, not against an attacker who
// can run SQL (any session may SET search_path). It takes effect for new
// connections; existing ones keep their setting until they reconnect. Undo
// with UnguardDefaultSearchPath.
func (p *Plugin) GuardDefaultSearchPath(ctx context.Context) error {
	if err := p.registered(); err != nil {
		return err
	}
	ctx = noRoute(ctx)
	rows, err := listStrings(ctx, p.rootPool, `SELECT e.extname || ' (in ' || n.nspname || ')' FROM pg_catalog.pg_extension e
		JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
		WHERE n.nspname <> 'pg_catalog' AND NOT (n.nspname = ANY ($1)) ORDER BY 1`, append([]string{}, p.extSchemas...))
	if err != nil {
		return fmt.Errorf("tenantplugin: guard search_path: %w", err)
	}
	if len(rows) > 0 {
		return fmt.Errorf("tenantplugin: guard search_path: extensions outside the extension schemas %v would no longer be seen by GORM-built statements: %s; "+
			"move them (ALTER EXTENSION name SET SCHEMA extensions) and name the schema in WithExtensionSchemas", p.extSchemas, strings.Join(rows, ", "))
	}
	for _, s := range p.extSchemas {
		if err := extensionSchemaTables(ctx, p.rootPool, s); err != nil {
			return fmt.Errorf("tenantplugin: guard search_path: %w", err)
		}
	}
	path := "''"
	if len(p.extSchemas) > 0 {
		q := make([]string, len(p.extSchemas))
		for i, s := range p.extSchemas {
			q[i] = QuoteIdentifier(s)
		}
		path = strings.Join(q, ", ")
	}
	return p.alterRoleSearchPath(ctx, "SET search_path TO "+path)
}

// UnguardDefaultSearchPath removes the setting GuardDefaultSearchPath made.
func (p *Plugin) UnguardDefaultSearchPath(ctx context.Context) error {
	if err := p.registered(); err != nil {
		return err
	}
	return p.alterRoleSearchPath(noRoute(ctx), "RESET search_path")
}

func (p *Plugin) alterRoleSearchPath(ctx context.Context, action string) error {
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
