package tenantplugin

import (
	"errors"
	"fmt"
)

var (
	// ErrNoTenant is returned when a tenant table is used with a context that
	// carries no tenant. No SQL is sent.
	ErrNoTenant = errors.New("tenantplugin: no tenant in context")
	// ErrInvalidTenantName is returned for a tenant name that fails ValidateName.
	// No SQL is sent.
	ErrInvalidTenantName = errors.New("tenantplugin: invalid tenant name")
	// ErrUnknownTenant is returned when the tenant's schema (or registry row)
	// does not exist.
	ErrUnknownTenant = errors.New("tenantplugin: unknown tenant")
	// ErrTenantExists is returned by CreateTenant for a tenant that is already
	// registered.
	ErrTenantExists = errors.New("tenantplugin: tenant already exists")
	// ErrCrossTenant is returned when one statement would mix two tenants, such
	// as a subquery built for tenant A inside a statement for tenant B.
	ErrCrossTenant = errors.New("tenantplugin: statement mixes tenants")
)

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

// unknownTenantError reports a tenant that does not exist (no schema, or no
// registry row); it matches ErrUnknownTenant and keeps the database error
// reachable through errors.As.
type unknownTenantError struct {
	tenant string
	detail string // what is missing; default: its schema
	cause  error
}

// Error implements error.
func (e *unknownTenantError) Error() string {
	detail := e.detail
	if detail == "" {
		detail = "schema " + QuoteIdentifier(e.tenant) + " does not exist"
	}
	msg := fmt.Sprintf("tenantplugin: unknown tenant %q: %s", e.tenant, detail)
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *unknownTenantError) Is(target error) bool { return target == ErrUnknownTenant }

// Unwrap gives errors.Is and errors.As the cause.
func (e *unknownTenantError) Unwrap() error { return e.cause }

// notRegistered reports a tenant missing from the registry.
func notRegistered(name string) error {
	return &unknownTenantError{tenant: name, detail: "not registered"}
}

func noTenantError(table string) error {
	return fmt.Errorf("%w: table %q is a tenant table; use tenantplugin.WithTenant (or SharedOnly for shared tables)", ErrNoTenant, table)
}
