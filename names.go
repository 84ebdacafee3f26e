package tenantplugin

import (
	"fmt"
	"strings"
)

// MaxNameLength is the longest tenant name accepted, in bytes. PostgreSQL
// silently truncates identifiers longer than 63 bytes (NAMEDATALEN - 1), and
// a truncated name could resolve to another tenant's schema, so longer names
// are rejected.
const MaxNameLength = 63

// reservedNames may never be tenant names: they are PostgreSQL's own schemas
// or the default shared schema.
var reservedNames = map[string]bool{
	"public":             true,
	"information_schema": true,
}

// ValidateName reports whether name can be a tenant (schema) name. The rule is
// `^[a-z_]([a-z0-9_-]{0,61}[a-z0-9_])?$`: lower-case ASCII letters, digits,
// underscores and hyphens, at most 63 bytes, starting with a letter or an
// underscore and not ending with a hyphen (as a DNS label, so that every
// valid name can be a host label, `my-team.example.com`), not starting with
// `pg_` and not one of the schemas PostgreSQL or the library reserve (public,
// information_schema). Lower case only: PostgreSQL folds unquoted
// identifiers to lower case, so `Acme` and `acme` would otherwise name
// different schemas. A hyphen makes a name that PostgreSQL only accepts
// quoted; the library quotes every name it puts into SQL (QuoteIdentifier),
// so `my-team` and `my_team` are two distinct tenants. The error, a
// *NameError, wraps ErrInvalidTenantName and says which rule failed.
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
		case c == '-':
			if i == 0 {
				return "it starts with a hyphen"
			}
			if i == len(name)-1 {
				return "it ends with a hyphen (as a DNS label may not)"
			}
		case c >= 'A' && c <= 'Z':
			return fmt.Sprintf("it has the upper-case letter %q at byte %d (names are lower case)", c, i)
		default:
			return fmt.Sprintf("it has the character %q at byte %d (allowed: a-z, 0-9, _, -)", c, i)
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

// quoteLiteral quotes a validated name as a SQL string literal.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
