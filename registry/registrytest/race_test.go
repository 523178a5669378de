//go:build race

package registrytest_test

const raceEnabled = true
