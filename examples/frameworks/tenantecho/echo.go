// Package tenantecho serves echo applications per tenant.
//
//	e := echo.New()
//	e.Use(tenantecho.Middleware(tenanthttp.WithResolvers(
//		tenanthttp.Subdomain("notes.example", plugin.Directory()),
//	)))
//	e.GET("/notes", func(c echo.Context) error {
//		db.WithContext(c.Request().Context()).Find(&notes) // this tenant's notes
//		...
//	})
//
// echo.Context is not a context.Context: pass c.Request().Context() to
// db.WithContext. Middleware given to e.Use runs after echo matched the
// route; to resolve by path prefix (tenanthttp.PathPrefix, which serves
// /t/thor/notes as /notes), give it to e.Pre, which runs before routing.
package tenantecho

import (
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/labstack/echo/v4"
)

// Middleware adapts tenanthttp.Middleware to echo (echo.WrapMiddleware): a
// request the resolvers match goes on with c.Request().Context() carrying
// its tenant; any other gets 404 (400 for a malformed one, 503 when the
// registry is unreachable), written by tenanthttp's error handler
// (tenanthttp.WithErrorHandler replaces it), and the handler never runs.
func Middleware(opts ...tenanthttp.Option) echo.MiddlewareFunc {
	return echo.WrapMiddleware(tenanthttp.Middleware(opts...))
}
