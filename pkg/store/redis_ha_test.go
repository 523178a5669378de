package store

import (
	"testing"

	"github.com/elemta/elemta/pkg/store/storetest"
)

// haConfig is the [store] table of a setup of tools/testenv/redis-ha.sh.
func haConfig(s storetest.Setup) RedisConfig {
	c := DefaultRedisConfig()
	c.Addr, c.SentinelMaster, c.SentinelAddrs, c.SentinelPassword = s.Addr, s.SentinelMaster, s.SentinelAddrs, s.SentinelPassword
	c.ClusterAddrs, c.Username, c.Password = s.ClusterAddrs, s.Username, s.Password
	if s.TLSDir != "" {
		c.TLS = true
		c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = s.TLSDir+"/ca.crt", s.TLSDir+"/client.crt", s.TLSDir+"/client.key"
	}
	return c
}

// openHARedis opens a store of its own on the setup, with a fresh prefix.
func openHARedis(t testing.TB, s storetest.Setup) *Redis {
	t.Helper()
	cfg := haConfig(s)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := NewRedis(RedisOptions{Config: cfg, Prefix: s.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
