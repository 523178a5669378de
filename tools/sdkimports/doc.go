// Package sdkimports holds the test of the rule that makes the plugin SDK
// honest: a built-in plugin (plugins/...) and an example plugin
// (examples/...) import, in their code and in their tests, nothing a
// third-party module could not import: no package under an internal/
// directory of the core module. What built-ins share lives in the public
// packages under pkg/ and registry/. The SDK packages themselves (pkg/...,
// registry/...) import nothing from internal/ either, except the two test
// helpers that hand a test Elemta's own resolver (allowed below, by name).
//
//	go test ./tools/sdkimports
package sdkimports
