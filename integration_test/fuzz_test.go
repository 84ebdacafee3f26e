package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// FuzzNameEntryPoints feeds one name to every place a tenant name enters:
// WithTenant, RunInTenant, CreateTenant, MigrateTenant, DropTenant,
// ContextFor (job payloads), the header, path and subdomain resolvers of the
// middleware. An invalid name must fail with ErrInvalidTenantName at each of
// them and send no SQL; a valid one (hyphens included, which PostgreSQL only
// takes quoted) must work at each of them, GORM-built and raw statements
// alike, and reach its own schema. A canary table proves no injected
// statement ever ran. `go test` runs the seeds;
// `go test -fuzz FuzzNameEntryPoints ./integration_test` explores.
func FuzzNameEntryPoints(f *testing.F) {
	for _, s := range hostileNames {
		f.Add(s)
	}
	for _, s := range []string{"valid_fuzz_name", "my-team", "a--b", "x-1", "_-", "z" + strings.Repeat("-", 61) + "z",
		`a-";DROP TABLE canary;--`, "a-'b", "a-;", "x-y.z"} {
		f.Add(s)
	}
	e := newIsolatedEnv(f, 2)
	require.NoError(f, e.db.Exec(`CREATE TABLE IF NOT EXISTS `+e.shared+`.canary (id int)`).Error)
	require.NoError(f, e.db.Exec(`INSERT INTO `+e.shared+`.canary VALUES (1)`).Error)
	force := e.p.Migrator(tenantplugin.WithForce()) // one DDL capture for the whole run
	f.Fuzz(func(t *testing.T, name string) {
		ctx := context.Background()
		valid := tenantplugin.ValidateName(name) == nil && name != e.shared
		isInvalid := func(err error) {
			t.Helper()
			if !errors.Is(err, tenantplugin.ErrInvalidTenantName) {
				t.Fatalf("name %q: got %v, want ErrInvalidTenantName", name, err)
			}
		}
		dir := e.p.Directory()
		h := tenanthttp.Middleware(tenanthttp.WithResolvers(
			tenanthttp.Subdomain("fz.example", dir), tenanthttp.PathPrefix("/t", dir), tenanthttp.Header("X-Tenant", dir),
		))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := tenantplugin.FromContext(r.Context())
			if n != name {
				t.Errorf("middleware routed %q to %q", name, n)
			}
		}))
		payload, _ := json.Marshal(map[string]string{"tenant": name})

		if !valid {
			before := server.Counter.Count()
			isInvalid(e.db.WithContext(tenantplugin.WithTenant(ctx, name)).Find(&[]Poll{}).Error)
			isInvalid(e.db.WithContext(tenantplugin.WithTenant(ctx, name)).Exec("SELECT 1").Error)
			isInvalid(e.p.RunInTenant(ctx, name, func(*gorm.DB) error { return nil }))
			if name != e.shared {
				isInvalid(e.m.CreateTenant(ctx, name))
				isInvalid(e.m.DropTenant(ctx, name))
			}
			var job struct{ Tenant string }
			require.NoError(t, json.Unmarshal(payload, &job))
			_, err := e.p.ContextFor(ctx, job.Tenant)
			isInvalid(err)
			if name != "" {
				req := httptest.NewRequest("GET", "http://x.example/", nil)
				req.Header.Set("X-Tenant", name)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				// A well-formed but reserved name (public, pg_*) is no
				// tenant: 404, as a subdomain of that name; anything else
				// malformed is 400.
				want := http.StatusBadRequest
				if reservedName(name) {
					want = http.StatusNotFound
				}
				if rec.Code != want {
					t.Fatalf("header %q: status %d, want %d", name, rec.Code, want)
				}
			}
			if after := server.Counter.Count(); after != before {
				t.Fatalf("name %q: %d statements were sent", name, after-before)
			}
		} else {
			// A valid name works end to end and is removed again.
			require.NoError(t, e.m.CreateTenant(ctx, name))
			for _, target := range []string{"http://x.example/t/" + name + "/polls", "http://" + name + ".fz.example/polls"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
				if rec.Code != http.StatusOK {
					t.Fatalf("%s for %q: status %d", target, name, rec.Code)
				}
			}
			tctx, err := e.p.ContextFor(ctx, name)
			require.NoError(t, err)
			db := e.db.WithContext(tctx)
			require.NoError(t, db.Create(&Tag{Name: "gorm", Owner: name}).Error)
			require.NoError(t, db.Exec("INSERT INTO tags (name, owner) VALUES ('raw', current_schema())").Error)
			require.NoError(t, e.p.RunInTenant(ctx, name, func(tx *gorm.DB) error {
				return tx.Exec("INSERT INTO tags (name, owner) VALUES ('run', current_schema())").Error
			}))
			var owners []string
			require.NoError(t, db.Model(&Tag{}).Distinct("owner").Pluck("owner", &owners).Error)
			require.Equal(t, []string{name}, owners, "rows of %q", name)
			st, err := force.MigrateTenant(ctx, name)
			require.NoError(t, err)
			require.Equal(t, tenantplugin.StateMigrated, st)
			require.NoError(t, e.m.DropTenant(ctx, name))
			var left bool
			require.NoError(t, e.db.Raw("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ?)", name).Scan(&left).Error)
			require.False(t, left, "schema %q left behind", name)
		}
		var n int64
		require.NoError(t, e.db.Raw(`SELECT count(*) FROM `+e.shared+`.canary`).Scan(&n).Error)
		if n != 1 {
			t.Fatalf("canary table changed after %q", name)
		}
	})
}

// reservedName: a name that only the reservations refuse (public,
// information_schema, pg_*).
func reservedName(name string) bool {
	if name != "public" && name != "information_schema" && !strings.HasPrefix(name, "pg_") {
		return false
	}
	return tenantplugin.ValidateName("x"+strings.TrimPrefix(name, "pg_")) == nil
}
