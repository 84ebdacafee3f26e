package tenantplugin

import (
	"errors"
	"fmt"
	"strings"
)

// Every sentinel and error type of the package lives in this file. Errors
// that concern one tenant name it; errors.Is and errors.As see through every
// wrapper to the sentinel and to the database error underneath.

var (
	// ErrNoTenant is returned when a tenant table is used with a context that
	// carries no tenant. No SQL is sent.
	ErrNoTenant = errors.New("tenantplugin: no tenant in context")
	// ErrInvalidTenantName is returned for a name that cannot be a tenant:
	// it fails ValidateName, or it is the shared schema or an extension
	// schema. No SQL is sent.
	ErrInvalidTenantName = errors.New("tenantplugin: invalid tenant name")
	// ErrUnknownTenant is returned when a tenant is not registered or its
	// schema does not exist, and by the HTTP resolvers for a host or name
	// that belongs to no tenant.
	ErrUnknownTenant = errors.New("tenantplugin: unknown tenant")
	// ErrTenantExists is returned by CreateTenant for a tenant that is already
	// registered (or whose schema exists).
	ErrTenantExists = errors.New("tenantplugin: tenant already exists")
	// ErrCrossTenant is returned when one statement would mix two tenants, such
	// as a subquery built for tenant A inside a statement for tenant B.
	ErrCrossTenant = errors.New("tenantplugin: statement mixes tenants")
	// ErrNotRegistered is returned by every method that needs the plugin's
	// database when db.Use(plugin) has not run (or failed).
	ErrNotRegistered = errors.New("tenantplugin: the plugin is not registered: call db.Use(plugin) first")
	// ErrDependentObjects is returned when a tenant's schema is tied to the
	// rest of the database: DropTenant refuses to drop a schema that objects
	// outside it depend on, and a tenant migration that leaves
	// database-wide objects (an extension) in the tenant's schema fails.
	// The error is a *DependencyError listing the objects.
	ErrDependentObjects = errors.New("tenantplugin: objects outside the tenant depend on its schema")
	// ErrMalformedHost is returned for a host name that is not a well-formed
	// DNS name or IP literal (see tenanthttp.NormalizeHost).
	ErrMalformedHost = errors.New("tenantplugin: malformed host")
	// ErrNotCitus is returned by the Citus methods (DistributeTenants,
	// MoveTenant, TenantNode) when the database is not a Citus coordinator
	// with schema-based sharding (Citus 12.0 or newer).
	ErrNotCitus = errors.New("tenantplugin: not a Citus coordinator (the citus extension is not installed in this database)")
	// ErrCitusUnsupported is matched by every *CitusError: a model shape or
	// option Citus cannot support.
	ErrCitusUnsupported = errors.New("tenantplugin: not supported on Citus")
	// ErrNotUpToDate is returned by CloneTenant when the template tenant was
	// not migrated to the Migrator's current model set and migration list
	// (its recorded fingerprint differs), so its tables may not have the
	// shape of a new tenant's: migrate it first (MigrateTenant).
	ErrNotUpToDate = errors.New("tenantplugin: tenant is not up to date")
)

// NameError is returned for a tenant name that fails validation. It matches
// ErrInvalidTenantName with errors.Is.
type NameError struct {
	Name   string
	Reason string
}

// Error implements error.
func (e *NameError) Error() string {
	return fmt.Sprintf("tenantplugin: invalid tenant name %q: %s", truncateForMessage(e.Name), e.Reason)
}

// Is makes errors.Is(err, ErrInvalidTenantName) hold.
func (e *NameError) Is(target error) bool { return target == ErrInvalidTenantName }

// TenantError wraps an error that happened while working for one tenant, so
// that the message names the tenant. errors.Is and errors.As see through it.
type TenantError struct {
	Tenant string // tenant (schema) name
	Op     string // what was being done, e.g. "query", "migrate"
	Err    error
}

// Error implements error.
func (e *TenantError) Error() string {
	if e.Op == "" {
		return fmt.Sprintf("tenantplugin: tenant %q: %v", e.Tenant, e.Err)
	}
	return fmt.Sprintf("tenantplugin: tenant %q: %s: %v", e.Tenant, e.Op, e.Err)
}

// Unwrap gives errors.Is and errors.As the cause.
func (e *TenantError) Unwrap() error { return e.Err }

// UnknownTenantError reports a tenant that does not exist: it is not
// registered, its schema is missing, or (Host set) no tenant is registered
// for a host. It matches ErrUnknownTenant; Err, when set, is the database
// error that revealed it.
type UnknownTenantError struct {
	Tenant string // the tenant name, when there is one
	Host   string // the host that resolved to no tenant, for host lookups
	Detail string // what is missing; default: the tenant's schema
	Err    error
}

// Error implements error.
func (e *UnknownTenantError) Error() string {
	var msg string
	if e.Tenant == "" && e.Host != "" {
		msg = "tenantplugin: unknown tenant: no tenant for host " + quoteForMessage(e.Host)
	} else {
		detail := e.Detail
		if detail == "" {
			detail = "schema " + QuoteIdentifier(e.Tenant) + " does not exist"
		}
		msg = fmt.Sprintf("tenantplugin: unknown tenant %q: %s", truncateForMessage(e.Tenant), detail)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrUnknownTenant) hold.
func (e *UnknownTenantError) Is(target error) bool { return target == ErrUnknownTenant }

// Unwrap gives errors.Is and errors.As the cause.
func (e *UnknownTenantError) Unwrap() error { return e.Err }

// notRegistered reports a tenant missing from the registry.
func notRegistered(name string) error {
	return &UnknownTenantError{Tenant: name, Detail: "not registered"}
}

func noTenantError(table string) error {
	return fmt.Errorf("%w: table %q is a tenant table; use tenantplugin.WithTenant (or SharedOnly for shared tables)", ErrNoTenant, table)
}

// LayoutError is returned by db.Use(plugin) for a model shape or a
// configuration the plugin refuses because it cannot keep tenants apart with
// it: a tenant table whose name names a schema, a foreign key from a shared
// table to a tenant table, a name PostgreSQL would truncate. It names the
// model, the field when one is at fault, the table, and why.
type LayoutError struct {
	Model  string // Go type name of the model
	Field  string // the field at fault, if any
	Table  string
	Reason string
}

// Error implements error.
func (e *LayoutError) Error() string {
	where := "model " + e.Model
	if e.Field != "" {
		where += " field " + e.Field
	}
	return fmt.Sprintf("tenantplugin: %s (table %s): %s", where, e.Table, e.Reason)
}

// DependencyError lists the objects that tie a tenant's schema to the rest
// of the database, as PostgreSQL describes them (pg_describe_object): objects
// outside the schema that depend on objects inside it, which DROP SCHEMA ...
// CASCADE would drop too (a column of a shared table whose type an
// extension in the tenant's schema defines, a view, a foreign key), and
// database-wide objects inside it (an extension). Op is "drop" (DropTenant
// refused and changed nothing) or "migrate" (the tenant's migration was
// rolled back). It matches ErrDependentObjects.
type DependencyError struct {
	Tenant  string
	Op      string
	Objects []string
	// Dropped reports objects outside the tenant that a migration dropped
	// (a DROP ... CASCADE that followed dependencies out of the schema).
	Dropped bool
}

// Error implements error.
func (e *DependencyError) Error() string {
	list := strings.Join(e.Objects, "; ")
	if e.Op == "drop" || e.Op == "drop table" {
		return fmt.Sprintf("tenantplugin: tenant %q: %s refused, nothing was changed: objects outside the tenant's schema depend on it "+
			"and would be dropped with it: %s", e.Tenant, e.Op, list)
	}
	if e.Dropped {
		return fmt.Sprintf("tenantplugin: tenant %q: %s: a migration dropped objects outside the tenant's schema (a DROP ... CASCADE follows dependencies out of it): %s; "+
			"the tenant was left as it was", e.Tenant, e.Op, list)
	}
	return fmt.Sprintf("tenantplugin: tenant %q: %s: a migration left database-wide objects in the tenant's schema, or made objects outside it depend on it: %s; "+
		"create such objects in a shared migration (WithSharedMigrations) or an extension schema (WithExtensionSchemas); the tenant was left as it was", e.Tenant, e.Op, list)
}

// Is makes errors.Is(err, ErrDependentObjects) hold.
func (e *DependencyError) Is(target error) bool { return target == ErrDependentObjects }

// CitusError is returned on a Citus coordinator, at start-up (MigrateShared,
// and the first tenant creation or migration), for what Citus cannot
// support: WithTenantRoles, a shared table that tenant tables reference but
// that cannot be a reference table, a connection to a worker instead of the
// coordinator. It names the model and table when one is at fault, and says
// why. It matches ErrCitusUnsupported; Err, when set, is the database error.
type CitusError struct {
	Model  string // Go type name of the model at fault, if any
	Table  string // its table
	Reason string
	Err    error
}

// Error implements error.
func (e *CitusError) Error() string {
	msg := "tenantplugin: Citus: "
	if e.Model != "" {
		msg += fmt.Sprintf("model %s (table %s): ", e.Model, e.Table)
	}
	msg += e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrCitusUnsupported) hold.
func (e *CitusError) Is(target error) bool { return target == ErrCitusUnsupported }

// Unwrap gives errors.Is and errors.As the database error.
func (e *CitusError) Unwrap() error { return e.Err }

// RunError is returned when some tenants of a run failed or were skipped. It
// unwraps to each failure (each a *TenantError naming its tenant) and to the
// context's error when the run was cancelled.
type RunError struct {
	Report *Report
	errs   []error
}

// Error implements error.
func (e *RunError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tenantplugin: %d of %d tenants failed", e.Report.Failed, len(e.Report.Results))
	if e.Report.Skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", e.Report.Skipped)
	}
	for i, err := range e.errs {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.errs)-5)
			break
		}
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As every failure.
func (e *RunError) Unwrap() []error { return e.errs }

// RegistryError reports that the tenant registry could not be read (the
// database is unreachable, say): the HTTP middleware answers 503.
type RegistryError struct{ Err error }

// Error implements error.
func (e *RegistryError) Error() string {
	return "tenantplugin: tenant registry unavailable: " + e.Err.Error()
}

// Unwrap gives errors.Is and errors.As the cause.
func (e *RegistryError) Unwrap() error { return e.Err }

func truncateForMessage(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func quoteForMessage(s string) string { return `"` + truncateForMessage(s) + `"` }

// MigrationError names the gormigrate migration whose function failed (or
// panicked), and whether it was being applied or rolled back: gormigrate
// returns a migration's error as is, so without it the message would not
// say which migration failed. For a tenant it comes wrapped in a
// *TenantError naming the tenant; errors.Is and errors.As see through both
// to the database error underneath.
type MigrationError struct {
	ID       string // the migration's ID
	Rollback bool   // its Rollback function failed, not its Migrate function
	Err      error
}

// Error implements error.
func (e *MigrationError) Error() string {
	if e.Rollback {
		return fmt.Sprintf("rollback of migration %q: %v", e.ID, e.Err)
	}
	return fmt.Sprintf("migration %q: %v", e.ID, e.Err)
}

// Unwrap gives errors.Is and errors.As the cause.
func (e *MigrationError) Unwrap() error { return e.Err }

// Internal errors: they reach callers only through a misuse the library
// itself would have to make, or a pool that cannot begin transactions.
var (
	errHandoffOnly = errors.New("tenantplugin: internal handoff connection only hands over rows")
	errNoBegin     = errors.New("tenantplugin: the connection pool cannot begin transactions, so raw SQL cannot be routed")
	errCaptured    = errors.New("captured")                                                                                           // rolls back the capture transaction (capture.go)
	errConnBusy    = errors.New("tenantplugin: the transaction's connection is busy: close the rows of its previous statement first") // as pgx's "conn busy"
	errPipeline    = errors.New("tenantplugin: unexpected reply from the server in a routed statement's pipeline")
)
