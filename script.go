package tenantplugin

import (
	"fmt"

	"gorm.io/gorm"
)

// ExecScript runs script, a text of several SQL statements separated by
// semicolons (a migration file, say), on tx in one round trip: with no
// arguments pgx sends it over the simple protocol, which runs several
// statements, and GORM's prepared-statement mode (PrepareStmt) is bypassed,
// since a script cannot be a prepared statement. Inside RunInTenant or a
// migration, tx is routed to its tenant, so the script's unqualified names
// resolve there. The error names the first statement that failed as
// PostgreSQL reports it.
func ExecScript(tx *gorm.DB, script string) error {
	if _, err := unprepared(tx.Statement.ConnPool).ExecContext(tx.Statement.Context, script); err != nil {
		return fmt.Errorf("tenantplugin: script: %w", err)
	}
	return nil
}
