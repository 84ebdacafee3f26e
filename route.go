package tenantplugin

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// Routing by search_path: raw SQL, and GORM statements carrying raw SQL
// fragments, run in a transaction whose search_path (and, with tenant roles,
// role) is set by one route statement.

// searchPath is the search_path used for raw SQL under v: the tenant, then
// the shared schema, then the extension schemas (WithExtensionSchemas), then
// pg_temp named last so that a temporary table cannot shadow a tenant table.
func (p *Plugin) searchPath(v *tenantValue) string {
	if v.shared {
		return p.sharedPath
	}
	if v.isolated {
		return v.quoted + ", " + p.isolatedPath
	}
	return v.quoted + ", " + p.sharedPath
}

// The route statement sets a transaction's search_path (and, with tenant
// roles, its role) with set_config(..., true), which ends with the
// transaction. Its first column casts the schema name to regnamespace, which
// fails with SQLSTATE 3F000 when the schema does not exist: PostgreSQL skips
// a search_path entry that names no schema, so without the check a tenant
// whose schema is missing would resolve to the shared schema. The check rides
// in the same statement, so it costs no round trip.
const (
	routeSQL     = "SELECT $1::pg_catalog.regnamespace, pg_catalog.set_config('search_path', $2, true)"
	routeRoleSQL = "SELECT $1::pg_catalog.regnamespace, pg_catalog.set_config('search_path', $2, true), pg_catalog.set_config('role', $3, true)"
)

// routeStatement returns the statement that routes the current transaction
// to v: its search_path and, with tenant roles, its role.
func (p *Plugin) routeStatement(v *tenantValue) (string, []any) {
	if p.roles && !v.shared {
		return routeRoleSQL, []any{p.routeSchema(v), p.searchPath(v), p.roleName(v.name)}
	}
	return routeSQL, []any{p.routeSchema(v), p.searchPath(v)}
}

// routeSchema is the quoted schema the route statement checks for v.
func (p *Plugin) routeSchema(v *tenantValue) string {
	if v.shared {
		return p.sharedQuoted
	}
	return v.quoted
}

// routeError describes a failed route statement: a missing schema is an
// unknown tenant, anything else a TenantError.
func routeError(v *tenantValue, err error) error {
	var pgErr *pgconn.PgError
	if !v.shared && errors.As(err, &pgErr) && pgErr.Code == "3F000" { // invalid_schema_name
		return &UnknownTenantError{Tenant: v.name, Err: err}
	}
	return &TenantError{Tenant: v.label(), Op: "set search_path", Err: err}
}

// registeredRouteStatement is the route statement of RunInTenant: it also
// checks that v is a registered tenant, returning one row when it is and
// none when it is not.
func (p *Plugin) registeredRouteStatement(v *tenantValue) (string, []any) {
	q := "SELECT pg_catalog.set_config('search_path', $2, true)"
	args := []any{p.routeSchema(v), p.searchPath(v), v.name}
	if p.roles {
		q += ", pg_catalog.set_config('role', $4, true)"
		args = append(args, p.roleName(v.name))
	}
	q += " FROM " + p.sharedQuoted + "." + QuoteIdentifier(TenantRecord{}.TableName()) +
		" WHERE name = $3 AND $1::pg_catalog.regnamespace IS NOT NULL"
	return q, args
}
