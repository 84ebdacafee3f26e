// Package tenanthttp resolves the tenant of each HTTP request and serves the
// request with a context that carries it (tenantplugin.WithTenant), so that
// every GORM statement the handler runs with r.Context() goes to that
// tenant's schema.
//
//	dir := plugin.Directory()
//	handler := tenanthttp.Middleware(tenanthttp.WithResolvers(
//		tenanthttp.Subdomain("polls.example", dir), // thor.polls.example
//		tenanthttp.Host(dir),                       // domains registered for a tenant
//	))(mux)
//
// A request no resolver matches gets 404; malformed or ambiguous input gets
// 400; an unreachable registry 503. A request never falls back to another
// tenant or to the shared schema. The middleware is plain net/http
// (func(http.Handler) http.Handler), so it works with http.ServeMux, chi,
// and through their adapters with gin and echo.
package tenanthttp
