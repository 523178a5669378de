// Package multinode holds the tests of several `elemta serve` processes
// sharing state through Redis (tools/testenv/redis-ha.sh's Cluster and
// Sentinel setups): one greylist, one rate limit and one result cache for
// every node, also while the Sentinel master fails over. It has no code
// of its own; see node_test.go.
package multinode
