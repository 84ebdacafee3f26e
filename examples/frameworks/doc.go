// Package frameworks holds tenantplugin's adapters for web frameworks, in a
// module of their own so that the library itself depends on none of them:
//
//   - tenantchi: chi takes the net/http middleware as it is (r.Use);
//   - tenantgin: gin; handlers pass c.Request.Context(), never the
//     *gin.Context itself (see the tenantgin package documentation);
//   - tenantecho: echo, through echo.WrapMiddleware (e.Use, or e.Pre to
//     resolve by path prefix before routing).
//
// Each adapter's tests run a small notes API on real PostgreSQL over HTTP:
// two tenants never see each other's notes, and an unknown tenant gets 404.
package frameworks
