package tenantplugin

import (
	"reflect"
	"strings"
	"testing"
)

func splitTexts(script string) []string {
	var out []string
	for _, s := range splitScript(script) {
		out = append(out, s.SQL)
	}
	return out
}

func TestSplitScript(t *testing.T) {
	cases := []struct {
		script string
		want   []string
	}{
		{"", nil},
		{" ;; \n -- only a comment\n ; /* and another */", nil},
		{"SELECT 1", []string{"SELECT 1"}},
		{"SELECT 1;SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"CREATE TABLE a (id int);\nCREATE INDEX a_id ON a (id);\n", []string{"CREATE TABLE a (id int)", "CREATE INDEX a_id ON a (id)"}},
		{"INSERT INTO t VALUES ('a;b', 'it''s;');SELECT 2", []string{"INSERT INTO t VALUES ('a;b', 'it''s;')", "SELECT 2"}},
		{`SELECT E'\';' AS x; SELECT 2`, []string{`SELECT E'\';' AS x`, "SELECT 2"}},
		{`SELECT 'a\'; SELECT 2`, []string{`SELECT 'a\'`, "SELECT 2"}}, // standard strings: no backslash escape
		{`SELECT 1 AS "a;""b"; SELECT 2`, []string{`SELECT 1 AS "a;""b"`, "SELECT 2"}},
		{"SELECT $$a;b$$; SELECT $fn$ x $$ ; $fn$; SELECT 3", []string{"SELECT $$a;b$$", "SELECT $fn$ x $$ ; $fn$", "SELECT 3"}},
		{"PREPARE p AS SELECT $1; EXECUTE p(1)", []string{"PREPARE p AS SELECT $1", "EXECUTE p(1)"}},
		{"SELECT a$b$ FROM t; SELECT 2", []string{"SELECT a$b$ FROM t", "SELECT 2"}}, // $ inside an identifier
		{"SELECT 1 -- c;\n; SELECT 2 /* x; /* nested; */ y; */ ;", []string{"SELECT 1 -- c;", "SELECT 2 /* x; /* nested; */ y; */"}},
		{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2)); SELECT 2",
			[]string{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2))", "SELECT 2"}},
		{"CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT x; END; SELECT f(1)",
			[]string{"CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT x; END", "SELECT f(1)"}},
		{"CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nBEGIN; SELECT CASE WHEN true THEN 1 END; END;",
			[]string{"CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END", "BEGIN", "SELECT CASE WHEN true THEN 1 END", "END"}},
		{"SELECT 'unterminated; SELECT 2", []string{"SELECT 'unterminated; SELECT 2"}},
	}
	for _, c := range cases {
		if got := splitTexts(c.script); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitScript(%q)\n got %q\nwant %q", c.script, got, c.want)
		}
	}
	lines := splitScript("\n-- header\nSELECT 1;\n\nSELECT\n2; SELECT 3")
	if len(lines) != 3 || lines[0].Line != 3 || lines[1].Line != 5 || lines[2].Line != 6 {
		t.Errorf("lines: %+v", lines)
	}
}

// FuzzSplitScript checks the splitter's invariants on any input: it never
// panics, every statement is a piece of the script in order, no statement
// is blank, and splitting a statement again gives it back whole. Joining
// statements that contain no top-level semicolon splits back into them.
func FuzzSplitScript(f *testing.F) {
	for _, s := range []string{"SELECT 1; SELECT 2", "SELECT ';'", "SELECT $a$;$a$; x", "/* ; /* ; */ ; */ ;", "E'\\'';", "-- ;\n;", "CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END; x", "$$", "'", "\"", "$1;$2", "e'"} {
		f.Add(s, "SELECT 'a;b'")
	}
	f.Fuzz(func(t *testing.T, script, other string) {
		stmts := splitScript(script)
		at := 0
		for _, s := range stmts {
			if strings.TrimSpace(s.SQL) == "" {
				t.Fatalf("blank statement from %q", script)
			}
			i := strings.Index(script[at:], s.SQL)
			if i < 0 {
				t.Fatalf("statement %q is not a piece of %q after offset %d", s.SQL, script, at)
			}
			at += i + len(s.SQL)
			again := splitScript(s.SQL)
			if len(again) != 1 || again[0].SQL != s.SQL {
				// A statement ending in an open comment or quote swallows
				// nothing more when split again; anything else must be whole.
				t.Fatalf("statement %q split again gives %q", s.SQL, again)
			}
		}
		// Two statements with no top-level semicolon, joined by one.
		a, b := stmtOf(script), stmtOf(other)
		if a == "" || b == "" {
			return
		}
		got := splitTexts(a + ";\n" + b)
		if len(got) != 2 || got[0] != a || got[1] != b {
			t.Fatalf("join of %q and %q splits into %q", a, b, got)
		}
	})
}

// stmtOf returns s's first statement when it is terminated properly and
// ends in no comment (so it can be joined to another), or "".
func stmtOf(s string) string {
	st := splitScript(s)
	if len(st) == 0 {
		return ""
	}
	x := st[0].SQL
	if again := splitScript(x + ";"); len(again) != 1 || again[0].SQL != x {
		return ""
	}
	if again := splitScript(x + ";SELECT 1"); len(again) != 2 || again[0].SQL != x || again[1].SQL != "SELECT 1" {
		return ""
	}
	return x
}
