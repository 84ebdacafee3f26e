package tenanthttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
)

// fakeDirectory answers from maps: the resolvers' contract needs no server.
type fakeDirectory struct {
	tenants map[string]bool
	hosts   map[string]string
}

func (d fakeDirectory) TenantForHost(_ context.Context, host string) (string, error) {
	if t, ok := d.hosts[host]; ok {
		return t, nil
	}
	return "", &tenantplugin.UnknownTenantError{Host: host}
}

func (d fakeDirectory) Exists(_ context.Context, tenant string) (bool, error) {
	return d.tenants[tenant], nil
}

var dir = fakeDirectory{
	tenants: map[string]bool{"thor": true, "loki": true, "acme": true},
	hosts:   map[string]string{"acme-corp.tracker.test": "acme"},
}

// serve runs one request through a middleware with rs and returns the status
// and, for 200, "tenant path".
func serve(t *testing.T, req *http.Request, rs ...Resolver) (int, string) {
	t.Helper()
	var got string
	h := Middleware(WithResolvers(rs...))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := tenantplugin.FromContext(r.Context())
		got = name + " " + r.URL.Path
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, got
}

func TestHeaderTwiceIsAmbiguous(t *testing.T) {
	req := httptest.NewRequest("GET", "http://x.example/", nil)
	req.Header.Add("X-Tenant", "thor")
	req.Header.Add("X-Tenant", "loki")
	if code, _ := serve(t, req, Header("X-Tenant", dir)); code != http.StatusBadRequest {
		t.Fatalf("two X-Tenant headers: %d, want 400", code)
	}
	req = httptest.NewRequest("GET", "http://x.example/", nil)
	req.Header.Set("X-Tenant", "thor")
	if code, got := serve(t, req, Header("X-Tenant", dir)); code != 200 || got != "thor /" {
		t.Fatalf("one header: %d %q", code, got)
	}
}

func TestPathPrefixRefusesUncleanOrHiddenSeparators(t *testing.T) {
	for _, p := range []string{"/t/thor/../loki/x", "/t/thor%2Fx/y", "/t/thor%2fx/y", "/t/thor/x%2F..%2Fy", "/t/thor//x", "/t/thor/./x", "/t/thor/x%5Cy", "/t/thor/x/.."} {
		req := httptest.NewRequest("GET", "http://x.example"+p, nil)
		if code, got := serve(t, req, PathPrefix("/t", dir)); code != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", p, code, got)
		}
	}
	for p, want := range map[string]string{"/t/thor/x": "thor /x", "/t/thor/": "thor /", "/t/thor/a/b/": "thor /a/b/", "/t/thor/a%20b": "thor /a b"} {
		req := httptest.NewRequest("GET", "http://x.example"+p, nil)
		if code, got := serve(t, req, PathPrefix("/t", dir)); code != 200 || got != want {
			t.Errorf("%s: %d %q, want 200 %q", p, code, got, want)
		}
	}
}

func TestRegisteredDomainWinsWhateverTheResolverOrder(t *testing.T) {
	for _, order := range [][]Resolver{
		{Subdomain("tracker.test", dir), Host(dir)},
		{Host(dir), Subdomain("tracker.test", dir)},
		{Subdomain("tracker.test", dir)},
	} {
		req := httptest.NewRequest("GET", "http://acme-corp.tracker.test/", nil)
		if code, got := serve(t, req, order...); code != 200 || got != "acme /" {
			t.Errorf("registered domain under the base: %d %q", code, got)
		}
		req = httptest.NewRequest("GET", "http://thor.tracker.test/", nil)
		if code, got := serve(t, req, order...); code != 200 || got != "thor /" {
			t.Errorf("subdomain: %d %q", code, got)
		}
		req = httptest.NewRequest("GET", "http://nobody.tracker.test/", nil)
		if code, _ := serve(t, req, order...); code != http.StatusNotFound {
			t.Errorf("unknown subdomain: %d", code)
		}
	}
}
