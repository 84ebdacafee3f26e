package tenantplugin

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// FuzzNamesRelation: the raw-fragment test is exactly "contains one of the
// relation words, ASCII case-insensitively" (PostgreSQL keywords are ASCII),
// so it can never miss a fragment a reference implementation flags.
func FuzzNamesRelation(f *testing.F) {
	for _, s := range []string{"id IN (SELECT tag_id FROM links)", "name = ?", "EXISTS (TABLE links)",
		"'links'::regclass", "nextval('s')", "SeLeCt", "sel\x00ect", "ſelect", "selec", "\xffTABLE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lower := make([]byte, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		want := false
		for _, w := range relationWords {
			if strings.Contains(string(lower), w) {
				want = true
			}
		}
		if got := namesRelation(s); got != want {
			t.Fatalf("namesRelation(%q) = %v, want %v", s, got, want)
		}
	})
}

func TestTxControlIn(t *testing.T) {
	for s, want := range map[string]string{
		"UPDATE a SET x = 1":                      "",
		"COMMIT":                                  "COMMIT", // the route runs before it: it would end the route's transaction
		"  begin":                                 "BEGIN",
		"COMMIT; INSERT INTO a VALUES (1)":        "COMMIT",
		"rollback; INSERT INTO a VALUES (1)":      "ROLLBACK",
		"SAVEPOINT s; UPDATE a SET x = 1":         "SAVEPOINT",
		"UPDATE a SET x = 1; release savepoint s": "RELEASE",
		// A breaker's findings: E'' strings, '$' inside identifiers,
		// non-ASCII dollar tags, BEGIN ATOMIC bodies.
		`SELECT E'\''; COMMIT; INSERT INTO kv VALUES ($$leak$$); SELECT 1 --'`:                                    "COMMIT",
		"SELECT 1 AS x$a$; COMMIT; INSERT INTO kv VALUES ('leak'); SELECT 1 AS y$a$":                              "COMMIT",
		`SELECT E'it\'s; commit'; SELECT 1`:                                                                       "",
		"SELECT $é$ ; commit $é$; SELECT 1":                                                                       "",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT f()":           "",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; COMMIT": "COMMIT",
		"PREPARE q AS SELECT 1": "",
		"ENDING":                "",
		"BEGIN; UPDATE a SET x = 1; COMMIT; UPDATE b SET y = 2":   "BEGIN",
		"UPDATE a SET x = 1; commit":                              "COMMIT",
		"SELECT 1;\n  -- note\n  /* c */ Rollback to savepoint s": "ROLLBACK",
		"SELECT 1; end":                                           "END",
		"SELECT 1; ABORT":                                         "ABORT",
		"SELECT 1; start transaction":                             "START",
		"SELECT 1; PREPARE TRANSACTION 'x'":                       "PREPARE TRANSACTION",
		"SELECT 1; PREPARE q AS SELECT 1":                         "",
		"SELECT CASE WHEN x THEN 1 END FROM a; SELECT 2":          "",
		"SELECT 'a; commit'; SELECT 2":                            "",
		`SELECT "x;commit" FROM a; SELECT 2`:                      "",
		"SELECT 1 -- ; commit\n; SELECT 2":                        "",
		"SELECT 1 /* ; /* nested ; commit */ commit */; SELECT 2": "",
		"CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql; SELECT f()":     "",
		"CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END $body$ LANGUAGE plpgsql; COMMIT": "COMMIT",
		"SELECT $1; COMMIT":                "COMMIT",
		"SELECT 'it''s; commit'; SELECT 1": "",
	} {
		if got := txControlIn(s); got != want {
			t.Errorf("txControlIn(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzTxControlIn(f *testing.F) {
	for _, s := range []string{"BEGIN; COMMIT", "SELECT '$$'; $x$ ; $x$", "/* /* */", "'", "$", "--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := txControlIn(s) // must not panic or loop
		if got != "" && !strings.Contains(strings.ToUpper(s), strings.Fields(got)[0]) {
			t.Fatalf("txControlIn(%q) = %q, not in the text", s, got)
		}
	})
}

func TestIsSavepointSQL(t *testing.T) {
	for sql, want := range map[string]bool{
		"SAVEPOINT sp0xc000123456":           true, // GORM's
		"ROLLBACK TO SAVEPOINT sp1":          true,
		"RELEASE SAVEPOINT sp1":              true,
		"savepoint s1":                       true, // by hand, a breaker's finding
		"rollback to savepoint s1;":          true,
		"ROLLBACK TO s1":                     true,
		"rollback work to savepoint s1":      true,
		"release s1":                         true,
		`SAVEPOINT "Quoted"`:                 true,
		"SAVEPOINT s1; UPDATE a SET x = 1":   false, // a script: routed, and refused (txControlIn)
		"ROLLBACK":                           false,
		"ROLLBACK TO SAVEPOINT s1; SELECT 1": false,
		"SELECT 'SAVEPOINT s1'":              false,
		"RELEASE SAVEPOINT s1 -- done\n":     true,
		"/* before */ SAVEPOINT s1":          true,
		"SAVEPOINT 's1'":                     false,
		"ROLLBACK PREPARED 'x'":              false,
		"SAVEPOINT a b":                      false,
	} {
		stmt := &gorm.Statement{}
		stmt.SQL.WriteString(sql)
		if got := isSavepointSQL(stmt); got != want {
			t.Errorf("isSavepointSQL(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestRetryOnDeadlock(t *testing.T) {
	deadlock := &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
	for _, c := range []struct {
		fails int // deadlocks before success
		calls int
		err   bool
	}{{0, 1, false}, {2, 3, false}, {5, 3, true}} {
		calls := 0
		err := retryOnDeadlock(func() error {
			calls++
			if calls <= c.fails {
				return fmt.Errorf("drop: %w", deadlock)
			}
			return nil
		})
		if calls != c.calls || (err != nil) != c.err {
			t.Errorf("%d deadlocks: %d calls, error %v; want %d calls, error %v", c.fails, calls, err, c.calls, c.err)
		}
	}
	calls := 0
	other := &pgconn.PgError{Code: "42P01"}
	if err := retryOnDeadlock(func() error { calls++; return other }); err != other || calls != 1 {
		t.Errorf("another error: %d calls, %v; want 1 call", calls, err)
	}
}
