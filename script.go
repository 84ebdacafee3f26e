package tenantplugin

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// ExecScript runs script, a text of several SQL statements separated by
// semicolons (a migration file, say), on tx. On plain PostgreSQL it is one
// round trip: with no arguments pgx sends it over the simple protocol, which
// runs several statements, and GORM's prepared-statement mode (PrepareStmt)
// is bypassed, since a script cannot be a prepared statement. On a Citus
// coordinator the script is split into its statements (as psql splits
// them: quotes, dollar quotes, comments and BEGIN ATOMIC bodies respected)
// and each is sent on its own, because Citus forwards a multi-statement
// string to the worker, which refuses one holding CREATE INDEX or ALTER
// TABLE. Whether tx's database is Citus is asked once per Plugin (the
// plugin registered on tx), or once per call without one. Inside RunInTenant
// or a migration, tx is routed to its tenant, so the script's unqualified
// names resolve there; with a tenant (or SharedOnly) context anywhere else,
// the script's transaction is routed to it first, as raw SQL is
// (ErrUnknownTenant for a missing schema). A script may not contain
// transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT...): it is
// refused before anything is sent, since it would end the transaction the
// script runs in. The error names the first statement that failed as
// PostgreSQL reports it (on Citus, with its number and line).
// A script may change session settings (SET search_path, SET ROLE, or
// set_config(..., false) as pg_dump writes), which would outlive the
// transaction on a pooled connection. After the script, ExecScript puts every
// session setting back to the connection's defaults (RESET ALL) and sets the
// transaction's own search_path and role again. Outside a transaction it
// opens one.
func ExecScript(tx *gorm.DB, script string) error {
	if w := txControlIn(script); w != "" {
		// Before anything is sent: the script runs inside a transaction
		// (RunInTenant's, a migration's, the caller's or its own), which
		// such a command would end or undo, and what follows it would run
		// outside it and off the tenant's path (a breaker's finding).
		return fmt.Errorf("tenantplugin: script: may not contain %s: it runs inside a transaction that %s would end or undo; remove the script's own transaction control", w, w)
	}
	if _, inTx := tx.Statement.ConnPool.(gorm.TxCommitter); !inTx {
		return tx.Transaction(func(t *gorm.DB) error { return ExecScript(t, script) })
	}
	conn := unprepared(tx.Statement.ConnPool)
	ctx := tx.Statement.Context
	p, _ := tx.Config.Plugins["tenantplugin"].(*Plugin)
	if p != nil && p.db == nil {
		p = nil
	}
	var citus bool
	var err error
	if p != nil {
		citus, err = p.onCitus(ctx, conn)
	} else {
		citus, _, err = detectCitus(ctx, conn)
	}
	if err != nil {
		return fmt.Errorf("tenantplugin: script: %w", err)
	}
	var path, role string
	if err := conn.QueryRowContext(ctx, "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('role')").Scan(&path, &role); err != nil {
		return fmt.Errorf("tenantplugin: script: %w", err)
	}
	if p != nil {
		if err := p.routeScript(tx, conn); err != nil {
			return err
		}
	}
	if !citus {
		if _, err := conn.ExecContext(ctx, script); err != nil {
			return fmt.Errorf("tenantplugin: script: %w", err)
		}
	} else {
		for i, s := range splitScript(script) {
			if _, err := conn.ExecContext(ctx, s.SQL); err != nil {
				return fmt.Errorf("tenantplugin: script: statement %d (line %d): %w", i+1, s.Line, err)
			}
		}
	}
	if _, err := conn.ExecContext(ctx, "RESET ALL"); err != nil {
		return fmt.Errorf("tenantplugin: script: reset session settings: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_catalog.set_config('search_path', $1, true), pg_catalog.set_config('role', $2, true)", path, role); err != nil {
		return fmt.Errorf("tenantplugin: script: route again: %w", err)
	}
	return nil
}

// routeScript routes the transaction of a script run with a tenant (or
// SharedOnly) context outside the library's own transaction for it, as raw
// SQL is routed (a breaker's finding: it ran on the default path, and a
// tenant's rows went to the shared schema's same-named table). ExecScript
// puts the path and role back afterwards.
func (p *Plugin) routeScript(tx *gorm.DB, conn gorm.ConnPool) error {
	v := valueFrom(tx.Statement.Context)
	switch {
	case v == nil, v.pathSetOn(tx.Statement.ConnPool):
		return nil
	case v.err != nil:
		return v.err
	}
	if !v.shared {
		if reason := p.notATenant(v.name); reason != "" {
			return &NameError{Name: v.name, Reason: reason}
		}
	}
	if owned, err := p.checkOwner(tx.Statement.ConnPool, v); owned || err != nil {
		return err
	}
	q, args := p.routeStatement(v)
	if _, err := conn.ExecContext(tx.Statement.Context, q, args...); err != nil {
		return routeError(v, err)
	}
	return nil
}

// scriptStatement is one statement of a script, as splitScript found it.
type scriptStatement struct {
	SQL  string // the statement's text, without the terminating semicolon, trimmed
	Line int    // the line (from 1) where it starts in the script
}

// splitScript splits a SQL script into its statements at the semicolons
// that end them, the way psql does: a semicolon inside a string ('...',
// E'...' with backslash escapes), a quoted identifier ("..."), a dollar-quoted
// string ($$...$$, $tag$...$tag$), a comment (-- to the end of the line, or
// /* ... */, nested), parentheses, or the BEGIN ATOMIC ... END body of a
// CREATE FUNCTION or PROCEDURE does not end a statement. Statements holding
// only blanks and comments are dropped. An unterminated quote or comment
// runs to the end of the script, as one last statement that PostgreSQL will
// report.
func splitScript(script string) []scriptStatement {
	var out []scriptStatement
	sc := scriptScanner{src: script}
	start, startLine, line := 0, 1, 1
	// Per statement: whether it has anything but blanks and comments, its
	// first words (to recognise CREATE FUNCTION/PROCEDURE), and the depth
	// of BEGIN ATOMIC ... END and CASE ... END inside such a body.
	var (
		content     bool
		words       []string
		parens      int
		atomicDepth int
		prevWord    string
	)
	emit := func(end int) {
		text := strings.TrimSpace(script[start:end])
		if content && text != "" {
			out = append(out, scriptStatement{SQL: text, Line: startLine})
		}
		content, words, parens, atomicDepth, prevWord = false, nil, 0, 0, ""
	}
	for sc.pos < len(script) {
		tokStart := sc.pos
		kind := sc.next()
		tok := script[tokStart:sc.pos]
		if !content && kind != tokSpace && kind != tokComment && kind != tokSemicolon {
			content = true
			startLine = line
		}
		line += strings.Count(tok, "\n")
		switch kind {
		case tokSemicolon:
			if parens == 0 && atomicDepth == 0 {
				emit(tokStart)
				start = sc.pos
			}
		case tokOpen:
			parens++
		case tokClose:
			if parens > 0 {
				parens--
			}
		case tokWord:
			w := strings.ToLower(tok)
			if len(words) < 4 {
				words = append(words, w)
			}
			if isRoutineDefinition(words) || atomicDepth > 0 {
				switch {
				case w == "atomic" && prevWord == "begin":
					atomicDepth++
				case w == "case" && atomicDepth > 0:
					atomicDepth++
				case w == "end" && atomicDepth > 0:
					atomicDepth--
				}
			}
			prevWord = w
		}
		if kind != tokWord && kind != tokSpace && kind != tokComment {
			prevWord = ""
		}
	}
	emit(len(script))
	return out
}

// isRoutineDefinition reports whether a statement's first words are CREATE
// [OR REPLACE] FUNCTION or PROCEDURE, whose SQL-standard body
// (BEGIN ATOMIC ... END) holds semicolons.
func isRoutineDefinition(words []string) bool {
	if len(words) < 2 || words[0] != "create" {
		return false
	}
	w := words[1]
	if w == "or" && len(words) >= 4 && words[2] == "replace" {
		w = words[3]
	}
	return w == "function" || w == "procedure"
}

type tokKind int

const (
	tokOther tokKind = iota
	tokSpace
	tokComment
	tokWord
	tokQuoted // a string, quoted identifier or dollar-quoted string
	tokSemicolon
	tokOpen
	tokClose
)

// scriptScanner cuts a script into the tokens splitScript needs.
type scriptScanner struct {
	src string
	pos int
}

func isWordStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isWordByte(c byte) bool { return isWordStart(c) || (c >= '0' && c <= '9') || c == '$' }

func (sc *scriptScanner) next() tokKind {
	s, i := sc.src, sc.pos
	c := s[i]
	switch {
	case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
		for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
			i++
		}
		sc.pos = i
		return tokSpace
	case c == '-' && i+1 < len(s) && s[i+1] == '-':
		if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
			sc.pos = i + j + 1
		} else {
			sc.pos = len(s)
		}
		return tokComment
	case c == '/' && i+1 < len(s) && s[i+1] == '*':
		depth := 0
		for i < len(s) {
			switch {
			case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
				depth++
				i += 2
			case s[i] == '*' && i+1 < len(s) && s[i+1] == '/':
				depth--
				i += 2
				if depth == 0 {
					sc.pos = i
					return tokComment
				}
			default:
				i++
			}
		}
		sc.pos = len(s)
		return tokComment
	case c == '\'':
		sc.pos = skipQuoted(s, i, '\'', false)
		return tokQuoted
	case c == '"':
		sc.pos = skipQuoted(s, i, '"', false)
		return tokQuoted
	case (c == 'e' || c == 'E') && i+1 < len(s) && s[i+1] == '\'':
		sc.pos = skipQuoted(s, i+1, '\'', true)
		return tokQuoted
	case c == '$':
		if end, ok := dollarQuoteEnd(s, i); ok {
			sc.pos = end
			return tokQuoted
		}
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' { // $1
			i++
		}
		sc.pos = i
		return tokOther
	case isWordStart(c):
		for i < len(s) && isWordByte(s[i]) {
			i++
		}
		sc.pos = i
		return tokWord
	case c >= '0' && c <= '9':
		for i < len(s) && (isWordByte(s[i]) || s[i] == '.') {
			i++
		}
		sc.pos = i
		return tokOther
	case c == ';':
		sc.pos = i + 1
		return tokSemicolon
	case c == '(' || c == '[':
		sc.pos = i + 1
		return tokOpen
	case c == ')' || c == ']':
		sc.pos = i + 1
		return tokClose
	}
	sc.pos = i + 1
	return tokOther
}

// skipQuoted returns the offset after the quoted token opening at s[i]
// (quote q, doubled to escape it; with backslash, \ escapes the next byte),
// or len(s) when it is not closed.
func skipQuoted(s string, i int, q byte, backslash bool) int {
	i++
	for i < len(s) {
		switch {
		case backslash && s[i] == '\\':
			i += 2
		case s[i] == q:
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// dollarQuoteEnd recognises a dollar-quoted string opening at s[i] ($$ or
// $tag$, tag an identifier without $) and returns the offset after its
// closing delimiter (len(s) when unclosed).
func dollarQuoteEnd(s string, i int) (int, bool) {
	j := i + 1
	if j < len(s) && isWordStart(s[j]) {
		for j < len(s) && isWordByte(s[j]) && s[j] != '$' {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return 0, false
	}
	delim := s[i : j+1]
	if k := strings.Index(s[j+1:], delim); k >= 0 {
		return j + 1 + k + len(delim), true
	}
	return len(s), true
}
