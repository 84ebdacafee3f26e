package tenanttest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/internal/testdb"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/gorm-tenancy/tenantplugin/tenanttest"
	"gorm.io/gorm"
)

type Note struct {
	ID   uint
	Text string
}

var (
	server   *testdb.DB
	db       *gorm.DB
	migrator *tenantplugin.Migrator
)

func TestMain(m *testing.M) {
	var err error
	if server, err = testdb.Create("tenanttest"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		if db, err = server.Open(8, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { s, _ := db.DB(); s.Close() }()
		plugin := tenantplugin.New(tenantplugin.WithTenantModels(&Note{}))
		if err := db.Use(plugin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		migrator = plugin.Migrator()
		if err := migrator.MigrateShared(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	if err := server.Drop(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func schemaExists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	if err := db.Raw("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ?)", name).Scan(&ok).Error; err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestParallelTestsEachGetTheirOwnTenant: parallel subtests each get a
// registered tenant of their own, see only their own rows, and their
// tenants are gone once they finish.
func TestParallelTestsEachGetTheirOwnTenant(t *testing.T) {
	var mu sync.Mutex
	names := map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for i := 0; i < 8; i++ {
			t.Run(fmt.Sprintf("Case %d: Pg_Ünïcode & spaces / a very long subtest name that goes on", i), func(t *testing.T) {
				t.Parallel()
				tn := tenanttest.New(t, migrator)
				if err := tenantplugin.ValidateName(tn.Name); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(tn.Name, "testparalleltestseachgettheirowntenant_") {
					t.Errorf("name %q does not start with the test's name", tn.Name)
				}
				mu.Lock()
				if names[tn.Name] {
					t.Errorf("name %q given twice", tn.Name)
				}
				names[tn.Name] = true
				mu.Unlock()
				if err := tn.DB().Create(&Note{Text: tn.Name}).Error; err != nil {
					t.Fatal(err)
				}
				var notes []Note
				if err := db.WithContext(tn.Context()).Find(&notes).Error; err != nil {
					t.Fatal(err)
				}
				if len(notes) != 1 || notes[0].Text != tn.Name {
					t.Errorf("tenant %s sees %v", tn.Name, notes)
				}
				if _, err := migrator.Plugin().ContextFor(context.Background(), tn.Name); err != nil {
					t.Errorf("not registered: %v", err)
				}
			})
		}
	})
	if len(names) != 8 {
		t.Fatalf("%d tenants", len(names))
	}
	registered, err := migrator.Tenants(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range registered {
		if names[n] {
			t.Errorf("tenant %s still registered after its test", n)
		}
	}
	for n := range names {
		if schemaExists(t, n) {
			t.Errorf("schema %s still there after its test", n)
		}
	}
}

func TestPrefixAndContext(t *testing.T) {
	var name string
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		tn := tenanttest.New(t, migrator, tenanttest.WithPrefix("9 Pg_Things"))
		name, ctx = tn.Name, tn.Context()
		if !strings.HasPrefix(name, "t_9_pg_things_") {
			t.Errorf("name %q", name)
		}
		if got, ok := tenantplugin.FromContext(ctx); !ok || got != name {
			t.Errorf("context carries %q", got)
		}
		if ctx.Err() != nil {
			t.Error("context cancelled during the test")
		}
		// A test may drop its tenant itself.
		if err := migrator.DropTenant(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	})
	if ctx.Err() == nil {
		t.Error("the tenant's context outlives its test")
	}
	if schemaExists(t, name) {
		t.Error("schema left behind")
	}
}

// TestRequestsResolveToTheTenant: for every resolver, the requests the
// helpers build reach the test's tenant through the real middleware, in
// process (NewRequest) and over HTTP (NewClientRequest).
func TestRequestsResolveToTheTenant(t *testing.T) {
	dir := migrator.Plugin().Directory()
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := tenantplugin.FromContext(r.Context())
		if !ok {
			http.Error(w, "no tenant", http.StatusInternalServerError)
			return
		}
		var notes []Note
		if err := db.WithContext(r.Context()).Find(&notes).Error; err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s %d", name, r.URL.Path, len(notes))
	})
	for _, c := range []struct {
		name     string
		opt      tenanttest.Option
		resolver tenanthttp.Resolver
	}{
		{"subdomain", tenanttest.WithSubdomain("app.test"), tenanthttp.Subdomain("app.test", dir)},
		{"domain", tenanttest.WithDomain("customers.example"), tenanthttp.Host(dir)},
		{"header", tenanttest.WithHeader("X-Tenant"), tenanthttp.Header("X-Tenant", dir)},
		{"path", tenanttest.WithPathPrefix("/t/"), tenanthttp.PathPrefix("/t", dir)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			handler := tenanthttp.Middleware(tenanthttp.WithResolvers(c.resolver))(app)
			a := tenanttest.New(t, migrator, c.opt)
			b := tenanttest.New(t, migrator, c.opt)
			if err := a.DB().Create(&Note{Text: "a"}).Error; err != nil {
				t.Fatal(err)
			}
			for _, tn := range []*tenanttest.Tenant{a, b} {
				want := fmt.Sprintf("%s /notes %d", tn.Name, map[bool]int{true: 1}[tn == a])
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, tn.NewRequest("GET", "/notes", nil))
				if rec.Code != 200 || rec.Body.String() != want {
					t.Errorf("in process: %d %q, want %q", rec.Code, rec.Body.String(), want)
				}
				srv := httptest.NewServer(handler)
				req, err := tn.NewClientRequest("GET", srv.URL+"/notes", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				srv.Close()
				if resp.StatusCode != 200 || string(body) != want {
					t.Errorf("over HTTP: %d %q, want %q", resp.StatusCode, body, want)
				}
			}
			// A request for nobody does not reach a or b.
			rec := httptest.NewRecorder()
			nobody := httptest.NewRequest("GET", "/t/nobody_here/notes", nil)
			nobody.Host = "nobody_here.app.test"
			nobody.Header.Set("X-Tenant", "nobody_here")
			handler.ServeHTTP(rec, nobody)
			if rec.Code != http.StatusNotFound {
				t.Errorf("unknown tenant: %d %s", rec.Code, rec.Body)
			}
		})
	}
	// Without the middleware, the request's context carries the tenant.
	tn := tenanttest.New(t, migrator)
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, tn.NewRequest("GET", "/notes", nil))
	if rec.Body.String() != tn.Name+" /notes 0" {
		t.Errorf("no middleware: %q", rec.Body.String())
	}
}

// BenchmarkNew measures what a test pays for its own tenant: New (the fast
// path) and the drop at cleanup, against creating the tenant through
// AutoMigrate (WithAutoMigrateCreate) in the same run.
func BenchmarkNew(b *testing.B) {
	ctx := context.Background()
	slow := migrator.Plugin().Migrator(tenantplugin.WithAutoMigrateCreate())
	tenanttest.New(b, migrator) // the one-time capture of the DDL, outside the timing
	var create, drop, auto time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		tn := tenanttest.New(b, migrator)
		create += time.Since(t0)
		t0 = time.Now()
		if err := migrator.DropTenant(ctx, tn.Name); err != nil {
			b.Fatal(err)
		}
		drop += time.Since(t0)
		name := fmt.Sprintf("bench_auto_%d_%d", i, time.Now().UnixNano())
		t0 = time.Now()
		if err := slow.CreateTenant(ctx, name); err != nil {
			b.Fatal(err)
		}
		auto += time.Since(t0)
		if err := slow.DropTenant(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(create), "create-ms")
	b.ReportMetric(ms(drop), "drop-ms")
	b.ReportMetric(ms(auto), "automigrate-create-ms")
	b.ReportMetric(float64(create)/float64(auto), "create/automigrate")
}
