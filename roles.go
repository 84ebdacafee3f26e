package tenantplugin

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// Per-tenant roles are documented on WithTenantRoles.

// WithTenantRoles turns per-tenant roles on, a guard on the database side.
// CreateTenant creates for every tenant a NOLOGIN role (see RoleName) with
// privileges on its own schema (tables and sequences, with default
// privileges for objects created later) and, through a group role
// (SharedAccessRoleName), on the shared schema (granted by MigrateShared);
// DropTenant drops it. The transactions the plugin routes for a tenant run
// under that role: raw statements (the role is set with
// set_config('role', ..., true) in the same statement as the search_path, no
// extra round trip) and GORM's writes (the same statement right after their
// BEGIN, or in the caller's transaction), RunInTenant, and the raw
// statements of your own transactions. A routing bug that reaches another
// tenant's schema then fails with "permission denied" instead of reading it.
//
// Strength, plainly: this guards against routing bugs, not against an
// attacker who can run SQL, because any session may RESET ROLE. GORM-built
// reads outside a transaction run as the connection's login role; they are
// qualified, which is the primary guarantee. Migrations and the library's
// own work run as the login role. Roles are objects of the whole cluster,
// not of one database, so their names carry a tag of the database, and each
// role records in its comment which database and tenant it serves: a role of
// that name that serves something else is an error, never reused.
// Registering the plugin asks the server for the database's name
// (current_database()). The connecting role needs CREATEROLE (or to be a
// superuser). The README, "Per-tenant roles", gives measured costs.
func WithTenantRoles() Option {
	return func(p *Plugin) { p.roles = true }
}

// RoleName is the role of tenant in database: "tp_" + the first 8 hex digits
// of the SHA-256 of the database name + "_" + tenant, or, when that would be
// longer than PostgreSQL's 63 bytes, "tp_" + tag + "#" + 51 hex digits of
// the SHA-256 of the tenant name. Short names map one to one; long names
// hash (204 bits), and the "#" (which no tenant name holds) keeps the two
// forms apart. The tag keeps databases of one cluster apart.
func RoleName(database, tenant string) string {
	prefix := "tp_" + databaseTag(database)
	if len(prefix)+1+len(tenant) <= MaxNameLength {
		return prefix + "_" + tenant
	}
	sum := sha256.Sum256([]byte(tenant))
	return prefix + "#" + hex.EncodeToString(sum[:])[:MaxNameLength-len(prefix)-1]
}

// SharedAccessRoleName is the group role of database that holds the tenant
// roles' privileges on the shared schema: "tp_" + tag + "%shared" ("%" is
// in no tenant name, so no tenant role has this name).
func SharedAccessRoleName(database string) string {
	return "tp_" + databaseTag(database) + "%shared"
}

func databaseTag(database string) string {
	sum := sha256.Sum256([]byte(database))
	return hex.EncodeToString(sum[:4])
}

// roleName is RoleName in the plugin's database.
func (p *Plugin) roleName(tenant string) string { return RoleName(p.database, tenant) }

// tenantRoleServes says what tenant's role serves, as its comment records.
func (p *Plugin) tenantRoleServes(tenant string) string {
	return "tenant " + tenant + " of database " + p.database
}

// createRole creates role r (NOLOGIN) with a comment saying what it
// serves, or checks that an existing role of that name serves it: a role of
// the same name that serves anything else is an error, never reused.
func createRole(tx *gorm.DB, r, what string) error {
	comment := "tenantplugin: " + what
	ctx, pool := tx.Statement.Context, tx.Statement.ConnPool
	var found sql.NullString
	var exists bool
	row := pool.QueryRowContext(ctx, "SELECT true, pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname = $1", r)
	if err := row.Scan(&exists, &found); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if exists {
		if found.String != comment {
			return fmt.Errorf("role %s exists and does not serve %s (its comment: %q)", QuoteIdentifier(r), what, found.String)
		}
		return nil
	}
	return execAll(tx, "CREATE ROLE "+QuoteIdentifier(r)+" NOLOGIN", "COMMENT ON ROLE "+QuoteIdentifier(r)+" IS "+quoteLiteral(comment))
}

// setupSharedAccess creates the group role and grants it the shared schema
// (MigrateShared, with tenant roles on).
func (p *Plugin) setupSharedAccess(tx *gorm.DB) error {
	group := SharedAccessRoleName(p.database)
	if err := createRole(tx, group, "shared access of database "+p.database); err != nil {
		return err
	}
	q := QuoteIdentifier(group)
	s := p.sharedQuoted
	return execAll(tx,
		"GRANT USAGE ON SCHEMA "+s+" TO "+q,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+s+" TO "+q,
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "+s+" TO "+q,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "+q,
		"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "+q,
	)
}

// setupTenantRole creates tenant v's role and grants it its schema.
func (p *Plugin) setupTenantRole(tx *gorm.DB, v *tenantValue) error {
	role := p.roleName(v.name)
	if err := createRole(tx, role, p.tenantRoleServes(v.name)); err != nil {
		return err
	}
	r := QuoteIdentifier(role)
	s := v.quoted
	return execAll(tx,
		"GRANT "+r+" TO CURRENT_USER",
		"GRANT "+QuoteIdentifier(SharedAccessRoleName(p.database))+" TO "+r,
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
	role := p.roleName(name)
	r := QuoteIdentifier(role)
	return execAll(tx,
		`DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = `+quoteLiteral(role)+`) THEN `+
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
