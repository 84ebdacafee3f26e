// Package hostname turns HTTP Host values into the form the tenant registry
// keeps. It is shared by the root package (domains given to CreateTenant and
// AddDomain) and tenanthttp (the resolvers); errors are built by the callers.
package hostname

import (
	"net/netip"
	"strconv"
	"strings"
)

// Normalize returns host without its port, in lower case, without a trailing
// dot. ok is false, with the reason, when host is not a well-formed DNS name
// or IP literal. Rules:
//   - ASCII only, checked before folding case: non-ASCII letters that fold to
//     ASCII (the Kelvin sign U+212A folds to "k") would let two different
//     Host values name one registry entry;
//   - labels of 1-63 bytes of a-z, 0-9, '-' and '_' (tenant names may hold
//     '_', and so may subdomains), not starting or ending with '-'; at most
//     253 bytes in all;
//   - a port, when present, is 1-65535 in decimal;
//   - a name whose last label is numeric must be an IPv4 literal
//     (RFC 3986 host syntax; "1.2.3" and "999.1.1.1" are refused);
//   - IPv6 literals in brackets, written back in their canonical form.
func Normalize(host string) (h string, reason string, ok bool) {
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return "", "non-ASCII byte", false
		}
	}
	h = host
	if strings.HasPrefix(h, "[") { // [::1]:8080
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", "unclosed [", false
		}
		addr, err := netip.ParseAddr(h[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", "bad IPv6 literal", false
		}
		if rest := h[end+1:]; rest != "" && !validPort(rest) {
			return "", "bad port", false
		}
		return "[" + addr.String() + "]", "", true
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return "", "bad port", false
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", "empty", false
	}
	if len(h) > 253 {
		return "", "longer than 253 bytes", false
	}
	labels := strings.Split(h, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 {
			return "", "empty or over-long label", false
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", "label starts or ends with '-'", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", "character " + strconv.QuoteRune(rune(c)), false
			}
		}
	}
	if numeric(labels[len(labels)-1]) {
		addr, err := netip.ParseAddr(h)
		if err != nil || !addr.Is4() {
			return "", "numeric host that is not an IPv4 address", false
		}
		return addr.String(), "", true
	}
	return h, "", true
}

func numeric(label string) bool {
	for i := 0; i < len(label); i++ {
		if label[i] < '0' || label[i] > '9' {
			return false
		}
	}
	return true
}

// validPort reports whether p is ":N" with N in 1-65535.
func validPort(p string) bool {
	if len(p) < 2 || len(p) > 6 || p[0] != ':' {
		return false
	}
	n := 0
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n >= 1 && n <= 65535
}
