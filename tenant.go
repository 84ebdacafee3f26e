package tenantplugin

import (
	"context"
	"fmt"
	"strings"
)

// MaxNameLength is the longest tenant name accepted, in bytes. PostgreSQL
// silently truncates identifiers longer than 63 bytes, and a truncated name
// could resolve to another tenant's schema, so longer names are rejected.
const MaxNameLength = 63

type ctxKey struct{}

// tenantValue is what WithTenant and SharedOnly store in a context. It is
// immutable and validated once, so statements only read it.
type tenantValue struct {
	name   string // tenant name (= schema name); empty in shared-only mode
	quoted string // `"name"`, quoted by QuoteIdentifier
	shared bool   // SharedOnly: every table goes to the shared schema
	err    error  // validation error of name, reported by every statement
	// pathSet marks a context whose transaction already runs under this
	// route's search_path (set right after BEGIN by the library itself), so
	// raw statements need no set_config of their own.
	pathSet bool
}

// label names v in errors.
func (v *tenantValue) label() string {
	if v.shared {
		return "(shared)"
	}
	return v.name
}

// withPathSet returns ctx marked as running inside a transaction whose
// search_path the library has set for v.
func withPathSet(ctx context.Context, v *tenantValue) context.Context {
	c := *v
	c.pathSet = true
	return context.WithValue(ctx, ctxKey{}, &c)
}

// WithTenant returns a copy of ctx that routes GORM statements to the schema
// of tenant name. The name is validated here once; an invalid name is kept in
// the context so that every statement run with it fails with
// ErrInvalidTenantName before any SQL is built.
func WithTenant(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, ctxKey{}, newTenantValue(name))
}

// newTenantValue validates name once and keeps its quoted form.
func newTenantValue(name string) *tenantValue {
	v := &tenantValue{name: name}
	if err := ValidateName(name); err != nil {
		v.err = err
	} else {
		v.quoted = QuoteIdentifier(name)
	}
	return v
}

// SharedOnly returns a copy of ctx in which every statement runs against the
// shared schema only: tenant tables are not reachable, no tenant is needed.
// It is the explicit (and greppable) way for admin code to work on shared
// tables and on the library's own bookkeeping there; a missing tenant never
// falls back to the shared schema by itself.
func SharedOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, &tenantValue{shared: true})
}

// FromContext returns the tenant carried by ctx. ok is false when ctx has no
// tenant, carries an invalid name, or is a SharedOnly context.
func FromContext(ctx context.Context) (name string, ok bool) {
	v := valueFrom(ctx)
	if v == nil || v.shared || v.err != nil {
		return "", false
	}
	return v.name, true
}

func valueFrom(ctx context.Context) *tenantValue {
	if ctx == nil {
		return nil
	}
	v, _ := ctx.Value(ctxKey{}).(*tenantValue)
	return v
}

// reservedNames may never be tenant names: they are PostgreSQL's own schemas
// or the default shared schema.
var reservedNames = map[string]bool{
	"public":             true,
	"information_schema": true,
}

// ValidateName reports whether name can be a tenant (schema) name. The rule is
// `^[a-z_][a-z0-9_]{0,62}$`, not starting with `pg_` and not one of the schemas
// PostgreSQL or the library reserve (public, information_schema). Lower case
// only: PostgreSQL folds unquoted identifiers to lower case, so `Acme` and
// `acme` would otherwise name different schemas. The error wraps
// ErrInvalidTenantName and says which rule failed.
func ValidateName(name string) error {
	reason := nameProblem(name)
	if reason == "" {
		return nil
	}
	return &NameError{Name: name, Reason: reason}
}

func nameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case len(name) > MaxNameLength:
		return fmt.Sprintf("it is %d bytes long, the limit is %d (PostgreSQL would truncate it)", len(name), MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9':
			if i == 0 {
				return "it starts with a digit"
			}
		case c >= 'A' && c <= 'Z':
			return fmt.Sprintf("it has the upper-case letter %q at byte %d (names are lower case)", c, i)
		default:
			return fmt.Sprintf("it has the character %q at byte %d (allowed: a-z, 0-9, _)", c, i)
		}
	}
	if strings.HasPrefix(name, "pg_") {
		return "names starting with pg_ are reserved by PostgreSQL"
	}
	if reservedNames[name] {
		return "it is a reserved schema name"
	}
	return ""
}

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

func truncateForMessage(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// QuoteIdentifier quotes s as a PostgreSQL identifier: it is wrapped in double
// quotes, embedded double quotes are doubled and NUL bytes (which PostgreSQL
// cannot store) are dropped. It does not validate: tenant names must pass
// ValidateName first. This is the only quoting the library applies to names;
// GORM's Dialector.QuoteTo is never used for them.
func QuoteIdentifier(s string) string {
	if !needsEscape(s) {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			b.WriteString(`""`)
		case 0:
		default:
			b.WriteByte(s[i])
		}
	}
	b.WriteByte('"')
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == 0 {
			return true
		}
	}
	return false
}
