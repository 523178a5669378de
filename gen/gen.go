// Package gen links the plugins of the default Elemta binary into the
// program. It holds no hand-written logic: plugins_gen.go is generated from
// ../plugins.yaml and blank-imports every selected plugin package, so that
// each package's init() calls registry.Register, and lists the names those
// packages must register in Manifest. The binary passes Manifest to
// pluginhost.CheckManifest at startup, which catches a plugin package that
// forgot to register or registers under another name.
//
// Regenerate after editing plugins.yaml with
//
//	go generate ./gen/...
//
// (make generate); make check-generate fails when the committed file is
// stale. Custom binaries and variants are built by tools/elemta-build
// without touching this package.
package gen

//go:generate go run ../tools/genplugins -config ../plugins.yaml -out plugins_gen.go
