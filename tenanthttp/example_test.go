package tenanthttp_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
)

func ExampleMiddleware() {
	handler := tenanthttp.Middleware(tenanthttp.WithResolvers(
		tenanthttp.ResolverFunc(func(r *http.Request) (string, error) {
			if r.Host == "thor.example" {
				return "thor", nil
			}
			return "", tenanthttp.ErrNoMatch
		}),
	))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := tenantplugin.FromContext(r.Context())
		fmt.Fprint(w, "hello ", name)
	}))

	for _, host := range []string{"thor.example", "nobody.example"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "http://"+host+"/", nil)
		handler.ServeHTTP(rec, req)
		fmt.Println(host, rec.Code, rec.Body.String())
	}
	// Output:
	// thor.example 200 hello thor
	// nobody.example 404 Not Found
}
