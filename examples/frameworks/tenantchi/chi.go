// Package tenantchi serves chi routers per tenant. chi takes net/http
// middleware as it is, so the adapter is tenanthttp.Middleware itself:
//
//	r := chi.NewRouter()
//	r.Use(tenantchi.Middleware(tenanthttp.WithResolvers(
//		tenanthttp.Subdomain("notes.example", plugin.Directory()),
//	)))
//	r.Get("/notes", func(w http.ResponseWriter, r *http.Request) {
//		db.WithContext(r.Context()).Find(&notes) // this tenant's notes
//	})
//
// Middleware given to r.Use runs before chi matches the route, so
// tenanthttp.PathPrefix works too: /t/thor/notes is routed as /notes.
package tenantchi

import (
	"net/http"

	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
)

// Middleware is tenanthttp.Middleware, for r.Use. A request for no tenant
// gets 404 (400 for a malformed one, 503 when the registry is unreachable)
// and never reaches the router.
func Middleware(opts ...tenanthttp.Option) func(http.Handler) http.Handler {
	return tenanthttp.Middleware(opts...)
}
