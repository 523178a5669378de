package arc

import (
	"context"
	"net"
	"strings"
	"sync"
)

// fakeResolver answers TXT queries from a map; missing names are NXDOMAIN.
type fakeResolver struct {
	txt  map[string]string
	errs map[string]error
	mu   sync.Mutex
	seen int
}

func (r *fakeResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	r.seen++
	r.mu.Unlock()
	if err := r.errs[name]; err != nil {
		return nil, err
	}
	if v, ok := r.txt[name]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *fakeResolver) LookupMX(context.Context, string) ([]*net.MX, error) { return nil, nil }
func (r *fakeResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, nil
}
func (r *fakeResolver) LookupAddr(context.Context, string) ([]string, error) { return nil, nil }
