package storetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/elemta/elemta/pkg/testenv"
)

// Setup is one of the highly available Redis setups of
// tools/testenv/redis-ha.sh (`make testenv-redis-ha`): Sentinel, Cluster,
// or one server over TLS with a client certificate and an ACL user.
type Setup struct {
	Name string // "sentinel", "cluster" or "tls"
	// TOML holds the connection keys for the [store] table (or, for a
	// plugin's own pool, the same names in its table).
	TOML string
	// The same as fields.
	Addr             string
	SentinelMaster   string
	SentinelAddrs    []string
	SentinelPassword string
	ClusterAddrs     []string
	Username         string
	Password         string
	TLSDir           string // ca.crt, client.crt, client.key; "" without TLS
}

// Sentinel is the Sentinel setup (one master, one replica, three
// sentinels, all with passwords). Skipped without it, failed under CI.
// The test holds a shared lock on the setup until it ends, so no test in
// another process kills the master meanwhile.
func Sentinel(t testing.TB) Setup {
	t.Helper()
	s := sentinelSetup(t)
	sentinelLock(t, false)
	return s
}

// SentinelExclusive is Sentinel for a test that kills the master
// (KillSentinelMaster): it waits until no other test uses the setup.
func SentinelExclusive(t testing.TB) Setup {
	t.Helper()
	s := sentinelSetup(t)
	sentinelLock(t, true)
	return s
}

func sentinelSetup(t testing.TB) Setup {
	t.Helper()
	addrs := strings.Split(testenv.Require(t, testenv.RedisSentinel), ",")
	s := Setup{Name: "sentinel", SentinelMaster: testenv.Require(t, testenv.RedisSentinelMaster), SentinelAddrs: addrs,
		SentinelPassword: testenv.Require(t, testenv.RedisSentinelPassword), Password: testenv.Require(t, testenv.RedisSentinelDataPass)}
	s.TOML = fmt.Sprintf("redis_sentinel_master = %q\nredis_sentinel_addrs = %s\nredis_sentinel_password = %q\nredis_password = %q\n",
		s.SentinelMaster, tomlList(addrs), s.SentinelPassword, s.Password)
	return s
}

// Cluster is the three-master Cluster.
func Cluster(t testing.TB) Setup {
	t.Helper()
	addrs := strings.Split(testenv.Require(t, testenv.RedisCluster), ",")
	return Setup{Name: "cluster", ClusterAddrs: addrs, TOML: fmt.Sprintf("redis_cluster_addrs = %s\n", tomlList(addrs))}
}

// TLS is the TLS-only server: certificates made by the script, client
// certificates required, an ACL user.
func TLS(t testing.TB) Setup {
	t.Helper()
	s := Setup{Name: "tls", Addr: testenv.Require(t, testenv.RedisTLS), TLSDir: testenv.Require(t, testenv.RedisTLSDir),
		Username: testenv.Require(t, testenv.RedisTLSUser), Password: testenv.Require(t, testenv.RedisTLSPassword)}
	s.TOML = fmt.Sprintf("redis_addr = %q\nredis_username = %q\nredis_password = %q\nredis_tls = true\nredis_tls_ca_file = %q\nredis_tls_cert_file = %q\nredis_tls_key_file = %q\n",
		s.Addr, s.Username, s.Password, filepath.Join(s.TLSDir, "ca.crt"), filepath.Join(s.TLSDir, "client.crt"), filepath.Join(s.TLSDir, "client.key"))
	return s
}

// Setups are the three.
func Setups(t testing.TB) []Setup { return []Setup{Sentinel(t), Cluster(t), TLS(t)} }

func tomlList(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Client returns a client of the setup (for checks and clean-up), closed
// when the test ends.
func (s Setup) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	var tc *tls.Config
	if s.TLSDir != "" {
		pem, err := os.ReadFile(filepath.Join(s.TLSDir, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		kp, err := tls.LoadX509KeyPair(filepath.Join(s.TLSDir, "client.crt"), filepath.Join(s.TLSDir, "client.key"))
		if err != nil {
			t.Fatal(err)
		}
		tc = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	}
	var c redis.UniversalClient
	switch s.Name {
	case "sentinel":
		c = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.SentinelMaster, SentinelAddrs: s.SentinelAddrs,
			SentinelPassword: s.SentinelPassword, Password: s.Password, DisableIdentity: true})
	case "cluster":
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: s.ClusterAddrs, DisableIdentity: true})
	default:
		c = redis.NewClient(&redis.Options{Addr: s.Addr, Username: s.Username, Password: s.Password, TLSConfig: tc, DisableIdentity: true})
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a key prefix no other test uses; its keys are deleted
// when the test ends (on every master of a Cluster).
func (s Setup) Prefix(t testing.TB) string {
	t.Helper()
	prefix := fmt.Sprintf("elemta-test:%s:%d:%d:", strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(t.Name()), time.Now().UnixNano(), seq.Add(1))
	t.Cleanup(func() {
		c := s.Client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		del := func(ctx context.Context, c *redis.Client) error { return DeletePrefix(ctx, c, prefix) }
		var err error
		if cc, ok := c.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(ctx, del)
		} else {
			err = del(ctx, c.(*redis.Client))
		}
		if err != nil {
			t.Errorf("clean up redis keys %s* (%s): %v", prefix, s.Name, err)
		}
	})
	return prefix
}
