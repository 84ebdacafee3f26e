// Package tenantgin serves gin applications per tenant.
//
//	r := gin.New()
//	r.Use(tenantgin.Middleware(tenanthttp.WithResolvers(
//		tenanthttp.Subdomain("notes.example", plugin.Directory()),
//	)))
//	r.GET("/notes", func(c *gin.Context) {
//		db.WithContext(c.Request.Context()).Find(&notes) // this tenant's notes
//	})
//
// # Pass c.Request.Context(), never c
//
// *gin.Context is a context.Context, but it is the wrong one to give GORM:
//
//   - With the engine's ContextWithFallback off (the default), its Value
//     method does not look into c.Request.Context(), where the middleware
//     put the tenant: db.WithContext(c) carries no tenant, and every
//     statement on a tenant table fails with tenantplugin.ErrNoTenant before
//     any SQL is sent. It fails closed (no other tenant, no shared schema),
//     but it fails.
//   - With ContextWithFallback on, db.WithContext(c) finds the tenant, but
//     gin recycles each *gin.Context for the next request while
//     database/sql's goroutine that watches a query's context may still
//     read it: a data race (gin issues #3931 and #4117), which the race
//     detector reported in this package's tests when they used it.
//
// c.Request.Context() carries the tenant and belongs to the request alone.
// The tests show all three.
//
// gin runs middleware after it matched the route, so tenanthttp.PathPrefix
// (which serves /t/thor/notes as /notes) cannot work as gin middleware:
// wrap the whole engine instead, tenanthttp.Middleware(...)(r), as an
// http.Handler.
package tenantgin

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
)

// Middleware adapts tenanthttp.Middleware to gin: a request the resolvers
// match goes on (c.Next) with c.Request's context carrying its tenant; any
// other gets 404 (400 for a malformed one, 503 when the registry is
// unreachable), written by tenanthttp's error handler
// (tenanthttp.WithErrorHandler replaces it), and the chain is aborted.
// Handlers give c.Request.Context() to db.WithContext (see the package
// documentation).
func Middleware(opts ...tenanthttp.Option) gin.HandlerFunc {
	mw := tenanthttp.Middleware(opts...)
	return func(c *gin.Context) {
		served := false
		mw(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			served = true
			c.Request = r
			c.Next()
		})).ServeHTTP(c.Writer, c.Request)
		if !served {
			c.Abort()
		}
	}
}
