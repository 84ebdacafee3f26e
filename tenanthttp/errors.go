package tenanthttp

import "errors"

var (
	// ErrNoMatch is returned by a Resolver when the request is not its kind:
	// the middleware tries the next resolver.
	ErrNoMatch = errors.New("tenanthttp: resolver does not apply")
	// ErrMalformedRequest is returned when a request names its tenant in a
	// malformed or ambiguous way: two values of the tenant header, or a path
	// whose remainder is not clean or hides a separator. Answered 400.
	ErrMalformedRequest = errors.New("tenanthttp: malformed request")
)
