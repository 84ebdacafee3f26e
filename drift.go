package tenantplugin

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// While a migration rolls out, tenants briefly differ in layout, and a
// statement the driver has cached for a table (a prepared statement, or the
// result description pgx keeps in cache_describe mode) no longer fits after
// the table changed: PostgreSQL answers "cached plan must not change result
// type" (0A000), or "bind message has N result formats but query has M
// columns" (08P01). pgx drops the cached entry on that error, so running the
// statement once more succeeds. driftPool does that retry for statements
// outside a transaction; the failed attempt executed nothing (the error comes
// before execution). Inside a transaction the first error aborts the
// transaction, so there the error reaches the caller, as it must.

func isDriftError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "0A000":
		return strings.Contains(pgErr.Message, "cached plan must not change result type")
	case "08P01":
		return strings.Contains(pgErr.Message, "bind message has")
	}
	return false
}

// isStaleStatement reports an error of a statement prepared (or described)
// for another tenant's layout: drift, or parameter types the first tenant's
// columns fixed that this tenant's columns do not take (PostgreSQL keeps a
// prepared statement's parameter types when it re-analyzes it under another
// search_path): undefined_function (42883, "operator does not exist") and
// datatype_mismatch (42804). Both come before execution.
func isStaleStatement(err error) bool {
	var pgErr *pgconn.PgError
	return isDriftError(err) || isMissingStatement(err) || errors.As(err, &pgErr) && (pgErr.Code == "42883" || pgErr.Code == "42804")
}

// isMissingStatement reports that one of the library's prepared statements
// (prepared.go) no longer exists on the connection: DEALLOCATE or DISCARD
// ALL ran on it (invalid_sql_statement_name, 26000, naming the statement).
// The statement was not run; every statement of the connection is prepared
// again on its next use.
func isMissingStatement(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "26000" && strings.Contains(pgErr.Message, statementPrefix)
}

// retryOnStale runs fn, and once more when it failed on a statement
// prepared for another tenant's layout (isStaleStatement): routed raw SQL.
func retryOnStale[T any](fn func() (T, error)) (T, error) { return retryOnce(isStaleStatement, fn) }

// retryOnDrift runs fn, and once more when it failed on drift.
func retryOnDrift[T any](fn func() (T, error)) (T, error) { return retryOnce(isDriftError, fn) }

// deadlockRetries is how many times retryOnDeadlock runs fn at most.
const deadlockRetries = 3

// retryOnDeadlock runs fn, a whole transaction, again while PostgreSQL
// cancelled it to break a deadlock (deadlock_detected, 40P01), at most
// deadlockRetries times in all.
func retryOnDeadlock(fn func() error) error {
	var err error
	for range deadlockRetries {
		var pgErr *pgconn.PgError
		if err = fn(); !errors.As(err, &pgErr) || pgErr.Code != "40P01" {
			return err
		}
	}
	return err
}

func retryOnce[T any](retryable func(error) bool, fn func() (T, error)) (T, error) {
	v, err := fn()
	if err != nil && retryable(err) {
		return fn()
	}
	return v, err
}
