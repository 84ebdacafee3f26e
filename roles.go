package tenantplugin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"gorm.io/gorm"
)

// Per-tenant roles are documented on WithTenantRoles.

// SharedAccessRole is the group role holding the tenant roles' privileges
// on the shared schema.
const SharedAccessRole = "tenantplugin_shared_access"

// WithTenantRoles turns per-tenant roles on, a guard on the database side.
// CreateTenant creates for every tenant a NOLOGIN role, RoleName(tenant),
// with privileges on its own schema (tables and sequences, with default
// privileges for objects created later) and, through the group role
// SharedAccessRole, on the shared schema (granted by MigrateShared);
// DropTenant drops it. The transactions the plugin routes for a tenant run
// under that role: raw statements (the role is set with
// set_config('role', ..., true) in the same statement as the search_path, no
// extra round trip), GORM's write transactions (one extra statement per
// write), RunInTenant, and the raw statements of your own transactions. A
// routing bug that reaches another tenant's schema then fails with
// "permission denied" instead of reading it.
//
// Strength, plainly: this guards against routing bugs, not against an
// attacker who can run SQL, because any session may RESET ROLE. GORM-built
// reads outside a transaction run as the connection's login role; they are
// qualified, which is the primary guarantee. Migrations and the library's
// own work run as the login role. Roles are cluster-wide objects (one name
// space for every database of the server). The connecting role needs
// CREATEROLE (or to be a superuser). The README, "Per-tenant roles", gives
// measured costs.
func WithTenantRoles() Option {
	return func(p *Plugin) { p.roles = true }
}

// RoleName is the role of tenant name: tenantplugin_<name>, or for names
// too long for that, a prefix of the name and a hash (identifiers are
// limited to 63 bytes, and truncation could collide).
func RoleName(name string) string {
	const prefix = "tenantplugin_"
	if len(prefix)+len(name) <= MaxNameLength {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(name))
	return prefix + name[:37] + "_" + hex.EncodeToString(sum[:])[:12]
}

// setupSharedAccess creates the group role and grants it the shared schema
// (MigrateShared, with tenant roles on).
func (p *Plugin) setupSharedAccess(tx *gorm.DB) error {
	q := QuoteIdentifier(SharedAccessRole)
	s := p.sharedQuoted
	return execAll(tx,
		`DO $$ BEGIN CREATE ROLE `+q+` NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		"GRANT USAGE ON SCHEMA "+s+" TO "+q,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+s+" TO "+q,
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "+s+" TO "+q,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "+q,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "+q,
	)
}

// setupTenantRole creates tenant v's role and grants it its schema.
func (p *Plugin) setupTenantRole(tx *gorm.DB, v *tenantValue) error {
	r := QuoteIdentifier(RoleName(v.name))
	s := v.quoted
	return execAll(tx,
		`DO $$ BEGIN CREATE ROLE `+r+` NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		"GRANT "+r+" TO CURRENT_USER",
		"GRANT "+QuoteIdentifier(SharedAccessRole)+" TO "+r,
		"GRANT USAGE ON SCHEMA "+s+" TO "+r,
		"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "+s+" TO "+r,
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "+s+" TO "+r,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES TO "+r,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "+r,
	)
}

// dropTenantRole removes tenant name's role and its privileges in this
// database.
func (p *Plugin) dropTenantRole(tx *gorm.DB, name string) error {
	r := QuoteIdentifier(RoleName(name))
	return execAll(tx,
		`DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = `+quoteLiteral(RoleName(name))+`) THEN `+
			`EXECUTE 'DROP OWNED BY `+r+`'; EXECUTE 'DROP ROLE `+r+`'; END IF; END $$`,
	)
}

func execAll(tx *gorm.DB, stmts ...string) error {
	for _, s := range stmts {
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
