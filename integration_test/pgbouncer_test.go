package integration_test

import (
	"context"
	"fmt"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// startPgBouncer runs Debian's pgbouncer on a free loopback port in
// transaction pooling mode in front of the test server, with serverConns
// server connections, and returns a DSN for the run's database through it.
// scripts/test.sh installs pgbouncer and sets TENANTPLUGIN_REQUIRE_PGBOUNCER=1,
// so CI runs this test; a plain `go test` without pgbouncer skips it.
func startPgBouncer(t *testing.T, serverConns int) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr == nil {
			bin = "/usr/sbin/pgbouncer"
		} else if os.Getenv("TENANTPLUGIN_REQUIRE_PGBOUNCER") == "1" {
			t.Fatal("pgbouncer is required (TENANTPLUGIN_REQUIRE_PGBOUNCER=1) but not installed")
		} else {
			t.Skip("pgbouncer not installed; scripts/test.sh installs it")
		}
	}
	up, err := url.Parse(server.URL)
	require.NoError(t, err)
	pass, _ := up.User.Password()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	// Not t.TempDir: its parent is private, and pgbouncer runs as postgres
	// when the tests run as root.
	dir, err := os.MkdirTemp("", "tenantplugin-pgbouncer-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o777))
	userlist := filepath.Join(dir, "userlist.txt")
	require.NoError(t, os.WriteFile(userlist, []byte(fmt.Sprintf("%q %q\n", up.User.Username(), pass)), 0o644))
	ini := filepath.Join(dir, "pgbouncer.ini")
	conf := fmt.Sprintf(`[databases]
* = host=%s port=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, up.Hostname(), up.Port(), port, userlist, serverConns, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	require.NoError(t, os.WriteFile(ini, []byte(conf), 0o644))
	args := []string{ini}
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		args = []string{"-u", "postgres", ini} // pgbouncer refuses to run as root
	}
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", url.UserPassword(up.User.Username(), pass).String(), port, server.Name)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return dsn
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer did not start: %v\n%s\n%s", err, log, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestThroughPgBouncerTransactionMode: with tenantplugin.Open (unnamed
// statements), qualified GORM statements and SET LOCAL-routed raw SQL work
// through PgBouncer in transaction mode, with 16 clients multiplexed onto
// 2 server connections, and never cross tenants. A session-level SET, by
// contrast, leaks from one client to another: the reason the plugin never
// uses one.
func TestThroughPgBouncerTransactionMode(t *testing.T) {
	// PgBouncer 1.18 keeps no prepared statements across transactions:
	// naming the mode turns Open's prepared hot statements off.
	dsn := startPgBouncer(t, 2)
	t.Run("mode in the DSN", func(t *testing.T) {
		throughPgBouncer(t, tenantplugin.Open(dsn+"&default_query_exec_mode=cache_describe"))
	})
	// The mode set in code, as pgx's documentation shows for PgBouncer
	// (found by a breaker: the plugin then prepared statements anyway, and
	// PgBouncer 1.18 ran one client's statement for another).
	t.Run("mode in code", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(dsn)
		require.NoError(t, err)
		cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		throughPgBouncer(t, postgres.New(postgres.Config{Conn: stdlib.OpenDB(*cfg)}))
	})
	t.Run("exec mode in code", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(dsn)
		require.NoError(t, err)
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		throughPgBouncer(t, postgres.New(postgres.Config{Conn: stdlib.OpenDB(*cfg)}))
	})
	testSessionSetLeaks(t)
}

func throughPgBouncer(t *testing.T, d gorm.Dialector) {
	db, _, m := pluginDB(t, d, 16, "bouncer")
	ctx := context.Background()
	var tenants []string
	for i := 0; i < 4; i++ {
		n := fmt.Sprintf("pgb%d_%d", i, tenantN.Add(1))
		require.NoError(t, m.CreateTenant(ctx, n))
		tenants = append(tenants, n)
		tctx := tenantplugin.WithTenant(ctx, n)
		require.NoError(t, db.WithContext(tctx).Create(&Poll{Question: "q", Owner: n, Choices: []Choice{{Text: "c", Owner: n}}}).Error)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	leaks, reads := 0, 0
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			tn := tenants[g%len(tenants)]
			tdb := db.WithContext(tenantplugin.WithTenant(ctx, tn))
			for i := 0; i < 20; i++ {
				var owners []string
				var ps []Poll
				err := tdb.Preload("Choices").Find(&ps).Error
				if err == nil {
					err = tdb.Raw("SELECT owner FROM choices").Scan(&owners).Error
				}
				if err == nil { // with arguments: prepared or described statements
					var more []string
					err = tdb.Raw("SELECT owner FROM polls WHERE id > ? AND owner <> ?", 0, "nobody").Scan(&more).Error
					owners = append(owners, more...)
				}
				if err == nil {
					err = tdb.Transaction(func(tx *gorm.DB) error {
						var more []string
						if err := tx.Raw("SELECT owner FROM polls").Scan(&more).Error; err != nil {
							return err
						}
						owners = append(owners, more...)
						return tx.Create(&Tag{Name: "t", Owner: tn}).Error
					})
				}
				if err != nil {
					t.Error(err)
					return
				}
				for _, p := range ps {
					owners = append(owners, p.Owner)
					for _, c := range p.Choices {
						owners = append(owners, c.Owner)
					}
				}
				mu.Lock()
				for _, o := range owners {
					reads++
					if o != tn {
						leaks++
					}
				}
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	t.Logf("through pgbouncer: rows checked %d, leaks found %d", reads, leaks)
	assert.Zero(t, leaks)
	assert.GreaterOrEqual(t, reads, 16*20*4)
	for _, tn := range tenants {
		assert.Equal(t, []string{tn}, e2owners(t, db, tn, "tags"))
	}
}

// testSessionSetLeaks: the unsafe mode, for the record: a session-level SET
// by one client is seen by another client sharing the server connection.
func testSessionSetLeaks(t *testing.T) {
	one := startPgBouncer(t, 1) + "&default_query_exec_mode=cache_describe"
	c1, err := gorm.Open(tenantplugin.Open(one), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	c2, err := gorm.Open(tenantplugin.Open(one), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	defer func() { s, _ := c1.DB(); s.Close(); s, _ = c2.DB(); s.Close() }()
	require.NoError(t, c1.Exec(`SET search_path TO "leaked_path"`).Error)
	var path string
	require.NoError(t, c2.Raw("SHOW search_path").Scan(&path).Error)
	assert.Equal(t, `leaked_path`, path, "session SET crossed clients, as expected of transaction pooling")
	require.NoError(t, c1.Exec(`RESET search_path`).Error)
}

func e2owners(t *testing.T, db *gorm.DB, schema, table string) []string {
	var out []string
	require.NoError(t, db.Raw(fmt.Sprintf(`SELECT DISTINCT owner FROM %s.%s ORDER BY 1`,
		tenantplugin.QuoteIdentifier(schema), tenantplugin.QuoteIdentifier(table))).Scan(&out).Error)
	return out
}
