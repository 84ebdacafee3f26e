package tenantplugin

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "thor", "_x", "t1", "acme_co", strings.Repeat("a", 63), "pgx", "pg",
		"my-team", "a-b", "a--b", "xn--bcher-kva", "_-x", "x-1", "pg-x", "public-x", "a" + strings.Repeat("-", 61) + "b"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	bad := map[string]string{
		"":                         "empty",
		strings.Repeat("a", 64):    "64 bytes",
		strings.Repeat("é", 37):    "74 bytes",
		`""";DROP TABLE canary;--`: "character",
		"a b":                      "character",
		"x.y":                      "character",
		"pg_toast":                 "reserved by PostgreSQL",
		"public":                   "reserved schema",
		"information_schema":       "reserved schema",
		"Thor":                     "upper-case",
		"1abc":                     "digit",
		"a\x00b":                   "character",
		"-a":                       "starts with a hyphen",
		"-":                        "starts with a hyphen",
		"a-":                       "ends with a hyphen",
		"my-team-":                 "ends with a hyphen",
		"1-a":                      "digit",
		"my team":                  "character",
		"my.team":                  "character",
		"a-\"b":                    "character",
		"A-b":                      "upper-case",
		strings.Repeat("a-", 32):   "64 bytes",
	}
	for n, want := range bad {
		err := ValidateName(n)
		if !errors.Is(err, ErrInvalidTenantName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidTenantName", n, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %q, want the reason to mention %q", n, err, want)
		}
	}
}

func TestQuoteIdentifier(t *testing.T) {
	cases := map[string]string{
		"thor":         `"thor"`,
		`a"b`:          `"a""b"`,
		`""";DROP --`:  `""""""";DROP --"`,
		"nul\x00byte":  `"nulbyte"`,
		"":             `""`,
		"Mixed Case.x": `"Mixed Case.x"`,
	}
	for in, want := range cases {
		if got := QuoteIdentifier(in); got != want {
			t.Errorf("QuoteIdentifier(%q) = %s, want %s", in, got, want)
		}
	}
}

// unquote parses one quoted identifier and reports whether s was exactly
// that: a quote, doubled inner quotes, a closing quote and nothing after it.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '"' {
			if i+1 >= len(s)-1 || s[i+1] != '"' {
				return "", false // the identifier would end here
			}
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

// FuzzTenantName: the validator never panics, accepts only names of the rule
// (a-z, 0-9, _ and -, not starting with a digit or a hyphen, not ending with
// a hyphen) that quote to themselves within PostgreSQL's limit, and the
// quoter always yields one closed identifier that unquotes to its input
// (without NUL bytes).
func FuzzTenantName(f *testing.F) {
	for _, s := range []string{"thor", `""";DROP TABLE canary;--`, "a b", "x.y", "pg_toast", strings.Repeat("a", 64), "", "é", "\x00",
		"my-team", "-a", "a-", "a--b", `a-";DROP TABLE canary;--`, "x--", "_-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := QuoteIdentifier(s)
		got, ok := unquote(q)
		if !ok {
			t.Fatalf("QuoteIdentifier(%q) = %s is not one closed identifier", s, q)
		}
		if want := strings.ReplaceAll(s, "\x00", ""); got != want {
			t.Fatalf("unquote(QuoteIdentifier(%q)) = %q", s, got)
		}
		if err := ValidateName(s); err == nil {
			if len(s) == 0 || len(s) > MaxNameLength || !utf8.ValidString(s) || strings.HasPrefix(s, "pg_") {
				t.Fatalf("ValidateName accepted %q", s)
			}
			for _, c := range s {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
					t.Fatalf("ValidateName accepted %q with %q", s, c)
				}
			}
			if first, last := s[0], s[len(s)-1]; first == '-' || first >= '0' && first <= '9' || last == '-' {
				t.Fatalf("ValidateName accepted %q (first %q, last %q)", s, first, last)
			}
			if q != `"`+s+`"` {
				t.Fatalf("valid name %q quotes to %s", s, q)
			}
		} else if !errors.Is(err, ErrInvalidTenantName) {
			t.Fatalf("ValidateName(%q) error %v is not ErrInvalidTenantName", s, err)
		}
	})
}
