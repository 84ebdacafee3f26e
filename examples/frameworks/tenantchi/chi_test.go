package tenantchi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/gorm-tenancy/tenantplugin/examples/frameworks/internal/notes"
	"github.com/gorm-tenancy/tenantplugin/examples/frameworks/tenantchi"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/gorm-tenancy/tenantplugin/tenanttest"
)

var env notes.Env

func TestMain(m *testing.M) { notes.Main(m, &env) }

// router is the notes API on chi; handlers use r.Context().
func router(opts ...tenanthttp.Option) http.Handler {
	r := chi.NewRouter()
	r.Use(tenantchi.Middleware(opts...))
	r.Get("/notes", func(w http.ResponseWriter, r *http.Request) {
		list := []notes.Note{}
		if err := env.DB.WithContext(r.Context()).Order("id").Find(&list).Error; err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	r.Post("/notes", func(w http.ResponseWriter, r *http.Request) {
		var n notes.Note
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := env.DB.WithContext(r.Context()).Create(&n).Error; err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(n)
	})
	return r
}

func TestChiBySubdomain(t *testing.T) {
	srv := httptest.NewServer(router(tenanthttp.WithResolvers(tenanthttp.Subdomain(notes.Base, env.Plugin.Directory()))))
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	b := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	notes.CheckIsolation(t, srv.URL, a, b,
		notes.Request(t, "GET", srv.URL+"/notes", "nobody."+notes.Base),
		notes.Request(t, "POST", srv.URL+"/notes", "nobody."+notes.Base),
		notes.Request(t, "GET", srv.URL+"/notes", "elsewhere.example"))
}

// TestChiByPathPrefix: r.Use runs before chi routes, so /t/NAME/notes is
// routed as /notes.
func TestChiByPathPrefix(t *testing.T) {
	srv := httptest.NewServer(router(tenanthttp.WithResolvers(tenanthttp.PathPrefix("/t", env.Plugin.Directory()))))
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithPathPrefix("/t"))
	b := tenanttest.New(t, env.Migrator, tenanttest.WithPathPrefix("/t"))
	notes.CheckIsolation(t, srv.URL, a, b,
		notes.Request(t, "GET", srv.URL+"/t/nobody/notes", "localhost"),
		notes.Request(t, "GET", srv.URL+"/notes", "localhost"))
}
