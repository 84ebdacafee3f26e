package tenantplugin

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "thor", "_x", "t1", "acme_co", strings.Repeat("a", 63), "pgx", "pg"}
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
		"a-b":                      "character",
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

// FuzzTenantName: the validator never panics, accepts only names that quote
// to themselves within PostgreSQL's limit, and the quoter always yields one
// closed identifier that unquotes to its input (without NUL bytes).
func FuzzTenantName(f *testing.F) {
	for _, s := range []string{"thor", `""";DROP TABLE canary;--`, "a b", "x.y", "pg_toast", strings.Repeat("a", 64), "", "é", "\x00"} {
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
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
					t.Fatalf("ValidateName accepted %q with %q", s, c)
				}
			}
			if q != `"`+s+`"` {
				t.Fatalf("valid name %q quotes to %s", s, q)
			}
		} else if !errors.Is(err, ErrInvalidTenantName) {
			t.Fatalf("ValidateName(%q) error %v is not ErrInvalidTenantName", s, err)
		}
	})
}

func TestNormalizeHost(t *testing.T) {
	good := map[string]string{
		"thor.polls.localhost":      "thor.polls.localhost",
		"Thor.Polls.Localhost:8080": "thor.polls.localhost",
		"polls.thor.com.":           "polls.thor.com",
		"[::1]:8080":                "[::1]",
		"127.0.0.1:80":              "127.0.0.1",
		"a_b.example":               "a_b.example",
	}
	for in, want := range good {
		got, err := NormalizeHost(in)
		if err != nil || got != want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":8080", "a..b", "-a.com", "a-.com", "bad_host!", "a b", "x:port", "[::1", "[nope]:1",
		strings.Repeat("a", 64) + ".com", `x";drop.polls.localhost`, "thor.polls.localhost:99999999"} {
		if _, err := NormalizeHost(in); !errors.Is(err, ErrMalformedHost) {
			t.Errorf("NormalizeHost(%q) = %v, want ErrMalformedHost", in, err)
		}
	}
}

// FuzzHost: NormalizeHost never panics, its output is stable (normalizing
// twice changes nothing) and holds only host characters.
func FuzzHost(f *testing.F) {
	for _, s := range []string{"thor.polls.localhost:8080", "[::1]:80", "a..b", "\x00", "é.com", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := NormalizeHost(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHost) {
				t.Fatalf("NormalizeHost(%q) error %v is not ErrMalformedHost", s, err)
			}
			return
		}
		if h2, err := NormalizeHost(h); err != nil || h2 != h {
			t.Fatalf("NormalizeHost not stable on %q: %q -> %q, %v", s, h, h2, err)
		}
		for _, c := range h {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '[' || c == ']') {
				t.Fatalf("NormalizeHost(%q) = %q holds %q", s, h, c)
			}
		}
	})
}

func TestParseFlags(t *testing.T) {
	pos, flags, err := parseFlags([]string{"thor", "--domain", "a.com", "--domain=b.com", "--all"}, map[string]bool{"domain": true, "all": false})
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 1 || pos[0] != "thor" || len(flags["domain"]) != 2 || flags["domain"][1] != "b.com" {
		t.Fatalf("got %v %v", pos, flags)
	}
	if _, ok := flags["all"]; !ok {
		t.Fatal("--all not seen")
	}
	if _, _, err := parseFlags([]string{"--nope"}, map[string]bool{}); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown flag: %v", err)
	}
	if _, _, err := parseFlags([]string{"--domain"}, map[string]bool{"domain": true}); !errors.Is(err, ErrUsage) {
		t.Fatalf("missing value: %v", err)
	}
}
