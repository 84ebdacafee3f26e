package tenantplugin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"gorm.io/gorm"
)

// RenameTenant renames tenant oldName to newName, in one transaction under
// the advisory locks of both names (taken in name order, so two renames
// crossing each other cannot deadlock):
//
//   - the schema (ALTER SCHEMA ... RENAME TO: tables, sequences, indexes and
//     column defaults follow, as PostgreSQL refers to them by OID);
//   - the registry row, its domains, and every other row of a shared table
//     whose foreign key references the registry's name column (your
//     per-tenant subscriptions, say), all in one statement so that foreign
//     keys are checked once, at its end;
//   - with WithTenantRoles, the tenant's role (its RoleName for oldName
//     becomes its RoleName for newName; its grants follow it, its comment
//     names the new tenant), or a new role when the tenant had none;
//
// and then clears this process's Directory cache (other processes see the
// new name when their entries expire). The fingerprint and the migration
// bookkeeping move with the schema, so the tenant stays up to date.
//
// newName passes the checks of a new tenant (ValidateName, not the shared
// schema, not the login role's name). Errors, each leaving everything as it was: an invalid name gives
// ErrInvalidTenantName (a *NameError), an oldName that is not registered or
// has no schema ErrUnknownTenant (a *UnknownTenantError), a newName already
// registered, or naming an existing schema or (with tenant roles) an existing
// role, ErrTenantExists; other failures come as a *TenantError naming
// oldName.
//
// Code that keeps the old name elsewhere (a function body or a view that
// names the schema, a job queued with the old name) is not rewritten:
// such a job then fails with ErrUnknownTenant in ContextFor.
func (m *Migrator) RenameTenant(ctx context.Context, oldName, newName string) error {
	if err := m.p.registered(); err != nil {
		return err
	}
	if err := m.p.checkTenantName(oldName); err != nil {
		return err
	}
	if err := m.p.checkTenantName(newName); err != nil {
		return err
	}
	if oldName == newName {
		return fmt.Errorf("%w: %q (a tenant cannot be renamed to its own name)", ErrTenantExists, newName)
	}
	p := m.p
	err := p.db.WithContext(noRoute(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := lockTenants(tx, oldName, newName); err != nil {
			return err
		}
		if err := p.checkRename(tx, oldName, newName); err != nil {
			return err
		}
		if err := p.renameReferences(tx, oldName, newName); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		if _, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context,
			"ALTER SCHEMA "+QuoteIdentifier(oldName)+" RENAME TO "+QuoteIdentifier(newName)); err != nil {
			return err
		}
		if p.roles {
			return p.renameTenantRole(tx, oldName, newName)
		}
		return nil
	})
	p.Directory().Invalidate()
	if err != nil && !errors.Is(err, ErrUnknownTenant) && !errors.Is(err, ErrTenantExists) && !errors.Is(err, ErrInvalidTenantName) {
		return &TenantError{Tenant: oldName, Op: "rename to " + newName, Err: err}
	}
	return err
}

// lockTenants takes the advisory locks of the given tenants in name order:
// two transactions locking the same pair cannot deadlock.
func lockTenants(tx *gorm.DB, names ...string) error {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for i, n := range sorted {
		if i > 0 && n == sorted[i-1] {
			continue
		}
		if err := advisoryLock(tx, lockKey("tenant", n)); err != nil {
			return err
		}
	}
	return nil
}

// checkRename refuses a rename that cannot succeed, before anything is
// changed: oldName must be registered with a schema; newName must be free
// in the registry, among schemas and (with tenant roles) among roles, and
// must not be the login role's name (as CreateTenant refuses it). One round
// trip.
func (p *Plugin) checkRename(tx *gorm.DB, oldName, newName string) error {
	registry := p.sharedQuoted + "." + QuoteIdentifier(TenantRecord{}.TableName())
	q := `SELECT
  EXISTS (SELECT 1 FROM ` + registry + ` WHERE name = $1),
  EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1),
  EXISTS (SELECT 1 FROM ` + registry + ` WHERE name = $2),
  EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $2),
  EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $3),
  session_user, current_user`
	var oldReg, oldSchema, newReg, newSchema, newRole bool
	var sessionUser, currentUser string
	row := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context, q, oldName, newName, p.roleName(newName))
	if err := row.Scan(&oldReg, &oldSchema, &newReg, &newSchema, &newRole, &sessionUser, &currentUser); err != nil {
		return err
	}
	switch {
	case !oldReg:
		return notRegistered(oldName)
	case !oldSchema:
		return &UnknownTenantError{Tenant: oldName}
	case newName == sessionUser || newName == currentUser:
		return &NameError{Name: newName, Reason: "it is the name of the role the application connects as; the default search_path (\"$user\", public) would resolve unrouted SQL to this tenant's tables"}
	case newReg:
		return fmt.Errorf("%w: %q is registered", ErrTenantExists, newName)
	case newSchema:
		return fmt.Errorf("%w: schema %s exists but is not registered", ErrTenantExists, QuoteIdentifier(newName))
	case p.roles && newRole:
		return fmt.Errorf("%w: role %s exists (roles are shared by every database of the cluster)", ErrTenantExists, QuoteIdentifier(p.roleName(newName)))
	}
	return nil
}

// renameReferences renames the registry row and every row that references
// it through a foreign key (the library's domains, the application's shared
// tables), in one statement: foreign keys are checked at the end of a
// statement, data-modifying WITH clauses included, so the order of the
// updates does not matter and no constraint needs to be deferrable.
// Foreign keys declared ON UPDATE CASCADE are left to PostgreSQL.
func (p *Plugin) renameReferences(tx *gorm.DB, oldName, newName string) error {
	registry := p.sharedQuoted + "." + QuoteIdentifier(TenantRecord{}.TableName())
	const refs = `
SELECT n.nspname, c.relname, a.attname
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
 WHERE k.contype = 'f' AND k.confrelid = $1::pg_catalog.regclass
   AND pg_catalog.array_length(k.conkey, 1) = 1 AND k.confupdtype <> 'c'
 ORDER BY 1, 2, 3`
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, refs, registry)
	if err != nil {
		return err
	}
	var with []string
	for rows.Next() {
		var schema, table, column string
		if err := rows.Scan(&schema, &table, &column); err != nil {
			rows.Close()
			return err
		}
		col := QuoteIdentifier(column)
		with = append(with, fmt.Sprintf("r%d AS (UPDATE %s.%s SET %s = $2 WHERE %s = $1)",
			len(with), QuoteIdentifier(schema), QuoteIdentifier(table), col, col))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	stmt := "UPDATE " + registry + " SET name = $2 WHERE name = $1"
	if len(with) > 0 {
		stmt = "WITH " + strings.Join(with, ", ") + " " + stmt
	}
	res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, stmt, oldName, newName)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n != 1 {
		return notRegistered(oldName)
	}
	return nil
}

// renameTenantRole renames the tenant's role (grants are kept by OID) and
// records in its comment the tenant it now serves, or creates a role for a
// tenant created before tenant roles were turned on. A role of the old name
// that serves anything else is an error, never renamed.
func (p *Plugin) renameTenantRole(tx *gorm.DB, oldName, newName string) error {
	oldRole, newRole := p.roleName(oldName), p.roleName(newName)
	var comment sql.NullString
	row := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context,
		"SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname = $1", oldRole)
	switch err := row.Scan(&comment); {
	case errors.Is(err, sql.ErrNoRows):
		return p.setupTenantRole(tx, newTenantValue(newName))
	case err != nil:
		return err
	}
	if want := "tenantplugin: " + p.tenantRoleServes(oldName); comment.String != want {
		return fmt.Errorf("role %s does not serve tenant %q (its comment: %q)", QuoteIdentifier(oldRole), oldName, comment.String)
	}
	return execAll(tx,
		"ALTER ROLE "+QuoteIdentifier(oldRole)+" RENAME TO "+QuoteIdentifier(newRole),
		"COMMENT ON ROLE "+QuoteIdentifier(newRole)+" IS "+quoteLiteral("tenantplugin: "+p.tenantRoleServes(newName)))
}
