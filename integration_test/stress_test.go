package integration_test

import (
	"context"
	"errors"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestLeakHunt mixes every kind of statement from many goroutines over
// several tenants on a pool smaller than the goroutines, for a bounded time
// and count: GORM-built reads and writes, preloads, joins, raw reads and
// streams, transactions with savepoints rolled back, and contexts cancelled
// mid-statement. Every row carries its tenant's name; every read checks it.
func TestLeakHunt(t *testing.T) {
	e := newEnv(t, 6)
	tenants := e.seededTenants("hunt", 8)
	const goroutines, maxOps = 24, 4000
	deadline := time.Now().Add(4 * time.Second)
	var ops, rows, leaks, cancelled atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			tn := tenants[g%len(tenants)]
			ctx := tenantplugin.WithTenant(context.Background(), tn)
			db := e.db.WithContext(ctx)
			check := func(owners ...string) {
				for _, o := range owners {
					rows.Add(1)
					if o != tn {
						leaks.Add(1)
					}
				}
			}
			for time.Now().Before(deadline) && ops.Add(1) <= maxOps {
				var err error
				switch rng.Intn(7) {
				case 0:
					var ps []Poll
					if err = db.Preload("Choices").Preload("Tags").Find(&ps).Error; err == nil {
						for _, p := range ps {
							check(p.Owner)
							for _, c := range p.Choices {
								check(c.Owner)
							}
							for _, tg := range p.Tags {
								check(tg.Owner)
							}
						}
					}
				case 1:
					var owners []string
					if err = db.Raw("SELECT owner FROM choices UNION ALL SELECT owner FROM authors").Scan(&owners).Error; err == nil {
						check(owners...)
					}
				case 2:
					err = db.Transaction(func(tx *gorm.DB) error {
						_ = tx.Transaction(func(sp *gorm.DB) error {
							if err := sp.Exec("UPDATE polls SET question = 'rolled back'").Error; err != nil {
								return err
							}
							return errors.New("roll back the savepoint")
						})
						var owners []string
						if err := tx.Raw("SELECT owner FROM polls WHERE question <> 'rolled back'").Scan(&owners).Error; err != nil {
							return err
						}
						check(owners...)
						return tx.Create(&Choice{PollID: 1, Text: "tx", Owner: tn}).Error
					})
				case 3:
					var ps []Poll
					if err = db.Joins("Author").Joins("Plan").Find(&ps).Error; err == nil {
						for _, p := range ps {
							check(p.Owner, p.Author.Owner)
						}
					}
				case 4:
					cctx, cancel := context.WithTimeout(ctx, time.Duration(rng.Intn(3))*time.Millisecond)
					var n []int
					err = e.db.WithContext(cctx).Raw("SELECT 1 FROM polls, pg_sleep(0.05)").Scan(&n).Error
					cancel()
					if err != nil {
						cancelled.Add(1)
						err = nil
					}
				case 5:
					var p Poll
					if err = db.First(&p).Error; err == nil {
						check(p.Owner)
						err = db.Create(&Choice{PollID: p.ID, Text: "c", Owner: tn}).Error
					}
				case 6:
					r, qerr := db.Raw("SELECT owner FROM tags").Rows()
					if err = qerr; err == nil {
						for r.Next() {
							var o string
							if err = r.Scan(&o); err != nil {
								break
							}
							check(o)
						}
						if cerr := r.Close(); err == nil {
							err = cerr
						}
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	done := min(ops.Load(), maxOps)
	t.Logf("operations run: %d, rows checked: %d, cancelled mid-statement: %d, leaks found: %d", done, rows.Load(), cancelled.Load(), leaks.Load())
	assert.Zero(t, leaks.Load())
	assert.Greater(t, rows.Load(), int64(1000))
	for _, tn := range tenants {
		for _, tbl := range []string{"polls", "choices", "tags", "authors"} {
			assert.Equal(t, []string{tn}, e.owners(tn, tbl), "%s.%s", tn, tbl)
		}
		var n int64
		require.NoError(t, e.as(tn).Model(&Poll{}).Where("question = ?", "rolled back").Count(&n).Error)
		assert.Zero(t, n, "a rolled-back savepoint left a write in %s", tn)
	}
	e.assertCleanPool(t, tenants[0])
}
