package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestFailsClosedWithoutTenant: every statement kind on a tenant model
// without a tenant returns ErrNoTenant and sends nothing to the server.
func TestFailsClosedWithoutTenant(t *testing.T) {
	e := newEnv(t, 2)
	a := e.tenant("fc")
	e.seed(a, e.plan())
	db := e.db.WithContext(context.Background())
	ops := map[string]func() error{
		"find":    func() error { return db.Find(&[]Poll{}).Error },
		"first":   func() error { return db.First(&Poll{}).Error },
		"count":   func() error { var n int64; return db.Model(&Poll{}).Count(&n).Error },
		"create":  func() error { return db.Create(&Poll{Question: "x"}).Error },
		"update":  func() error { return db.Model(&Poll{}).Where("id = 1").Update("question", "x").Error },
		"delete":  func() error { return db.Where("id = 1").Delete(&Poll{}).Error },
		"scan":    func() error { var r []Poll; return db.Model(&Poll{}).Scan(&r).Error },
		"pluck":   func() error { var s []string; return db.Model(&Poll{}).Pluck("question", &s).Error },
		"table":   func() error { var s []string; return db.Table("choices").Pluck("text", &s).Error },
		"preload": func() error { return db.Preload("Choices").Find(&[]Poll{}).Error },
		"shared join": func() error {
			return db.Model(&Plan{}).Joins("JOIN polls ON polls.plan_id = plans.id").Find(&[]Plan{}).Error
		},
		"first create": func() error { return db.FirstOrCreate(&Poll{Question: "q"}).Error },
		"association":  func() error { return db.Model(&Poll{ID: 1}).Association("Tags").Append(&Tag{Name: "x"}) },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			before := server.Counter.Count()
			err := op()
			if name == "shared join" {
				// A shared model with a raw join: the plugin cannot see the
				// tenant table in the string; with no tenant the SQL runs
				// unrouted and fails on the missing table, not on a leak.
				require.Error(t, err)
				return
			}
			require.ErrorIs(t, err, tenantplugin.ErrNoTenant)
			assert.Equal(t, before, server.Counter.Count(), "SQL was sent")
		})
	}
	// Shared models need no tenant.
	var plans []Plan
	require.NoError(t, db.Find(&plans).Error)
	assert.NotEmpty(t, plans)
	// A join from a tenant model to a shared one fails without a tenant.
	before := server.Counter.Count()
	require.ErrorIs(t, db.Joins("Plan").Find(&[]Poll{}).Error, tenantplugin.ErrNoTenant)
	assert.Equal(t, before, server.Counter.Count())
}

func (e *env) plan() *Plan {
	p := &Plan{Name: "plan"}
	require.NoError(e.t, e.db.WithContext(tenantplugin.SharedOnly(context.Background())).Create(p).Error)
	return p
}

// hostileNames are names that must be refused before any SQL is built.
var hostileNames = []string{
	`""";DROP TABLE canary;--`,
	`"";DROP TABLE canary;--`,
	`x";DROP TABLE canary;--`,
	"a b", "x.y", "pg_toast", "pg_catalog", "public", "information_schema",
	strings.Repeat("a", 64), "", "é", "Thor", "1abc", "-ab", "ab-", "a\x00b", "tenant;", "a'b",
}

// TestHostileNamesRunNoSQL tries every hostile name at every entry point; a
// canary table proves no injected statement ran, the counter that nothing
// was sent at all.
func TestHostileNamesRunNoSQL(t *testing.T) {
	e := newEnv(t, 2)
	require.NoError(t, e.db.Exec("CREATE TABLE IF NOT EXISTS public.canary (id int)").Error)
	require.NoError(t, e.db.Exec("INSERT INTO public.canary VALUES (1)").Error)
	ctx := context.Background()
	for _, name := range hostileNames {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			before := server.Counter.Count()
			tctx := tenantplugin.WithTenant(ctx, name)
			_, ok := tenantplugin.FromContext(tctx)
			assert.False(t, ok)
			require.ErrorIs(t, e.db.WithContext(tctx).Find(&[]Poll{}).Error, tenantplugin.ErrInvalidTenantName)
			require.ErrorIs(t, e.db.WithContext(tctx).Exec("SELECT 1").Error, tenantplugin.ErrInvalidTenantName)
			var n int
			require.ErrorIs(t, e.db.WithContext(tctx).Raw("SELECT 1").Scan(&n).Error, tenantplugin.ErrInvalidTenantName)
			require.ErrorIs(t, e.db.WithContext(tctx).Find(&[]Plan{}).Error, tenantplugin.ErrInvalidTenantName)
			require.ErrorIs(t, e.m.CreateTenant(ctx, name), tenantplugin.ErrInvalidTenantName)
			require.ErrorIs(t, e.m.DropTenant(ctx, name), tenantplugin.ErrInvalidTenantName)
			require.ErrorIs(t, e.p.RunInTenant(ctx, name, func(*gorm.DB) error { return nil }), tenantplugin.ErrInvalidTenantName)
			assert.Equal(t, before, server.Counter.Count(), "SQL was sent for %q", name)
		})
	}
	var n int64
	require.NoError(t, e.db.Raw("SELECT count(*) FROM public.canary").Scan(&n).Error)
	assert.EqualValues(t, 1, n, "canary table")
}

// TestUnknownTenant: a valid name with no schema gives ErrUnknownTenant,
// naming the tenant.
func TestUnknownTenant(t *testing.T) {
	e := newEnv(t, 2)
	err := e.as("nosuch_tenant").Find(&[]Poll{}).Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	assert.Contains(t, err.Error(), `"nosuch_tenant"`)
	err = e.as("nosuch_tenant").Create(&Poll{Question: "x"}).Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	var n int
	err = e.as("nosuch_tenant").Raw("SELECT count(*) FROM polls").Scan(&n).Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	err = e.p.RunInTenant(context.Background(), "nosuch_tenant", func(*gorm.DB) error { return nil })
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
}

// TestRawSQLIsRouted: Raw, Exec, Row and Rows resolve unqualified names to
// the context's tenant, outside and inside a caller's transaction.
func TestRawSQLIsRouted(t *testing.T) {
	e := newEnv(t, 2)
	a, b := e.tenant("rawa"), e.tenant("rawb")
	plan := e.plan()
	e.seed(a, plan)
	e.seed(b, plan)
	before := e.snapshot(b)
	db := e.as(a)

	var owners []string
	require.NoError(t, db.Raw("SELECT owner FROM polls").Scan(&owners).Error)
	require.Len(t, owners, 3)
	allEqual(t, a, owners)

	var polls []Poll
	require.NoError(t, db.Raw("SELECT * FROM polls ORDER BY id").Find(&polls).Error)
	require.Len(t, polls, 3)
	assert.Equal(t, "q1", polls[0].Question)

	var owner string
	require.NoError(t, db.Raw("SELECT owner FROM choices LIMIT 1").Row().Scan(&owner))
	assert.Equal(t, a, owner)

	rows, err := db.Raw("SELECT owner, text FROM choices ORDER BY id").Rows()
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		var o, txt string
		require.NoError(t, rows.Scan(&o, &txt))
		assert.Equal(t, a, o)
		n++
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	assert.Equal(t, 6, n)

	res := db.Exec("UPDATE polls SET question = ? WHERE question = ?", "raw", "q1")
	require.NoError(t, res.Error)
	assert.EqualValues(t, 1, res.RowsAffected)

	// Shared tables resolve too; pg_temp comes last, so a temporary table
	// named like a tenant table does not shadow it.
	var plans int64
	require.NoError(t, db.Raw("SELECT count(*) FROM plans").Scan(&plans).Error)
	assert.Positive(t, plans)

	err = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("CREATE TEMPORARY TABLE polls (owner text) ON COMMIT DROP").Error; err != nil {
			return err
		}
		if err := tx.Exec("INSERT INTO pg_temp.polls VALUES ('temp')").Error; err != nil {
			return err
		}
		var os []string
		if err := tx.Raw("SELECT owner FROM polls").Scan(&os).Error; err != nil {
			return err
		}
		assert.Len(t, os, 3)
		allEqual(t, a, os)
		// GORM-built and raw statements in one transaction, with a
		// savepoint rolled back in between.
		if err := tx.Create(&Poll{Question: "in tx", Owner: a}).Error; err != nil {
			return err
		}
		_ = tx.Transaction(func(tx2 *gorm.DB) error {
			if err := tx2.Exec("UPDATE polls SET question = 'rolled back'").Error; err != nil {
				return err
			}
			return errors.New("roll back the savepoint")
		})
		var cnt int64
		if err := tx.Raw("SELECT count(*) FROM polls WHERE question = 'rolled back'").Scan(&cnt).Error; err != nil {
			return err
		}
		assert.Zero(t, cnt)
		return tx.Raw("SELECT count(*) FROM polls").Scan(&cnt).Error
	})
	require.NoError(t, err)
	assert.EqualValues(t, 4, e.count(a, "polls"))
	var raw int64
	require.NoError(t, e.db.Raw(fmt.Sprintf(`SELECT count(*) FROM %q.polls WHERE question = 'raw'`, a)).Scan(&raw).Error)
	assert.EqualValues(t, 1, raw)
	assert.Equal(t, before, e.snapshot(b))
}

// TestPoolNeverKeepsSearchPath alternates tenants, raw SQL and transactions
// on a pool of one connection, then checks the connection's search_path is
// the server default.
func TestPoolNeverKeepsSearchPath(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.tenant("poola"), e.tenant("poolb")
	plan := e.plan()
	e.seed(a, plan)
	e.seed(b, plan)
	var def string
	require.NoError(t, e.db.Raw("SELECT reset_val FROM pg_settings WHERE name = 'search_path'").Scan(&def).Error)
	for i := 0; i < 20; i++ {
		tn := a
		if i%2 == 1 {
			tn = b
		}
		db := e.as(tn)
		var owner string
		require.NoError(t, db.Raw("SELECT owner FROM polls LIMIT 1").Scan(&owner).Error)
		require.Equal(t, tn, owner)
		require.NoError(t, db.Exec("UPDATE choices SET votes = votes + 1").Error)
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			return tx.Raw("SELECT owner FROM choices LIMIT 1").Scan(&owner).Error
		}))
		require.Equal(t, tn, owner)
		_ = db.Transaction(func(tx *gorm.DB) error {
			tx.Exec("SELECT 1")
			return errors.New("rollback")
		})
		var path string
		require.NoError(t, e.db.Raw("SHOW search_path").Scan(&path).Error)
		require.Equal(t, def, path, "connection kept a tenant search_path")
	}
	// And a fresh *sql.DB on the same server sees the default too.
	sqlDB, err := sql.Open("pgx", server.URL)
	require.NoError(t, err)
	defer sqlDB.Close()
	var path string
	require.NoError(t, sqlDB.QueryRow("SHOW search_path").Scan(&path))
	assert.Equal(t, def, path)
}

// TestConcurrentTenants: many goroutines, several tenants, a pool smaller than
// the goroutines; every read must return only the goroutine's tenant.
func TestConcurrentTenants(t *testing.T) {
	e := newEnv(t, 4)
	tenants := e.seededTenants("conc", 6)
	const goroutines, iterations = 24, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	var leaks, rowsChecked int
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			tn := tenants[g%len(tenants)]
			db := e.as(tn)
			check := func(owners ...string) {
				mu.Lock()
				defer mu.Unlock()
				for _, o := range owners {
					rowsChecked++
					if o != tn {
						leaks++
					}
				}
			}
			for i := 0; i < iterations; i++ {
				var ps []Poll
				if err := db.Preload("Choices").Find(&ps).Error; err != nil {
					errs <- err
					return
				}
				for _, p := range ps {
					check(p.Owner)
					for _, c := range p.Choices {
						check(c.Owner)
					}
				}
				var owners []string
				if err := db.Raw("SELECT owner FROM choices").Scan(&owners).Error; err != nil {
					errs <- err
					return
				}
				check(owners...)
				if err := db.Create(&Choice{PollID: ps[0].ID, Text: "c", Owner: tn}).Error; err != nil {
					errs <- err
					return
				}
				var js []Poll
				if err := db.Joins("Author").Find(&js).Error; err != nil {
					errs <- err
					return
				}
				for _, p := range js {
					check(p.Owner, p.Author.Owner)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("statements: %d, rows checked: %d, leaks found: %d", goroutines*iterations*4, rowsChecked, leaks)
	assert.Zero(t, leaks)
	// Each iteration reads at least 3 polls + 6 choices, 6 raw choices and
	// 3 joined polls with their authors.
	assert.GreaterOrEqual(t, rowsChecked, goroutines*iterations*(9+6+6))
	for _, tn := range tenants {
		assert.Equal(t, []string{tn}, e.owners(tn, "choices"))
	}
}

// TestSharedOnly: the explicit shared scope routes every table to the shared
// schema and never needs a tenant.
func TestSharedOnly(t *testing.T) {
	e := newEnv(t, 2)
	ctx := tenantplugin.SharedOnly(context.Background())
	p := Plan{Name: "shared-only"}
	require.NoError(t, e.db.WithContext(ctx).Create(&p).Error)
	var got Plan
	require.NoError(t, e.db.WithContext(ctx).First(&got, p.ID).Error)
	assert.Equal(t, "shared-only", got.Name)
	// A tenant table under SharedOnly is out of reach: ErrNoTenant, and
	// nothing is sent (a shared copy of the table is never read).
	before := server.Counter.Count()
	err := e.db.WithContext(ctx).Find(&[]Poll{}).Error
	require.ErrorIs(t, err, tenantplugin.ErrNoTenant)
	assert.Equal(t, before, server.Counter.Count())
	_, ok := tenantplugin.FromContext(ctx)
	assert.False(t, ok)
}

// TestCrossTenantSubquery: a subquery bound to another tenant is refused.
func TestCrossTenantSubquery(t *testing.T) {
	e := newEnv(t, 2)
	a, b := e.tenant("xa"), e.tenant("xb")
	before := server.Counter.Count()
	err := e.as(a).Where("id IN (?)", e.as(b).Model(&Choice{}).Select("poll_id")).Find(&[]Poll{}).Error
	require.ErrorIs(t, err, tenantplugin.ErrCrossTenant)
	assert.Equal(t, before, server.Counter.Count())
}

// TestBufferedRawRowsKeepTypes: raw reads outside a transaction are buffered
// and replayed; scanning them must give what scanning the server's rows
// directly gives, for structs, maps and Rows, NULLs included.
func TestBufferedRawRowsKeepTypes(t *testing.T) {
	e := newEnv(t, 2)
	a := e.tenant("types")
	const q = `SELECT 1::int4 AS i4, 2::int8 AS i8, 'x'::text AS txt, true AS b, 1.5::float8 AS f,
	  12.34::numeric AS num, '2024-02-03 04:05:06+00'::timestamptz AS ts, '2024-02-03'::date AS d,
	  '{"k": [1, 2]}'::jsonb AS j, '\xdeadbeef'::bytea AS by, NULL::text AS nothing,
	  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, (SELECT count(*) FROM polls) AS polls`
	type row struct {
		I4      int32
		I8      int64
		Txt     string
		B       bool
		F       float64
		Num     string
		Ts      time.Time
		D       time.Time
		J       string
		By      []byte
		Nothing *string
		U       string
		Polls   int64
	}
	var viaPlugin, direct row
	require.NoError(t, e.as(a).Raw(q).Scan(&viaPlugin).Error)
	require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(fmt.Sprintf(`SET LOCAL search_path TO %s`, tenantplugin.QuoteIdentifier(a))).Error; err != nil {
			return err
		}
		return tx.Raw(q).Scan(&direct).Error
	}))
	assert.Equal(t, direct, viaPlugin)
	assert.Equal(t, []byte{0xde, 0xad, 0xbe, 0xef}, viaPlugin.By)
	assert.Nil(t, viaPlugin.Nothing)

	var m1, m2 map[string]any
	require.NoError(t, e.as(a).Raw(q).Scan(&m1).Error)
	require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(fmt.Sprintf(`SET LOCAL search_path TO %s`, tenantplugin.QuoteIdentifier(a))).Error; err != nil {
			return err
		}
		return tx.Raw(q).Scan(&m2).Error
	}))
	assert.Equal(t, m2, m1)

	rows, err := e.as(a).Raw(q).Rows()
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	require.NoError(t, err)
	assert.Equal(t, "INT4", cols[0].DatabaseTypeName())
	assert.Equal(t, "TIMESTAMPTZ", cols[6].DatabaseTypeName())
	require.True(t, rows.Next())
	var r row
	require.NoError(t, e.db.ScanRows(rows, &r))
	assert.Equal(t, direct, r)
	assert.False(t, rows.Next())
}
