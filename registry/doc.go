// Package registry is Elemta's plugin API: plugins compiled into the
// binary register here, and the host builds, runs and closes them.
//
// A plugin package calls Register from init() with a Module: its name,
// declared types, stages, ordering constraints, typed config with defaults
// and constructor. Register checks the module at once (a duplicate or
// invalid name, a nil constructor, or a declared type the plugin does not
// implement panics, naming the packages), so mistakes show at the first
// `go test`.
//
// The host parses the [plugins] part of its TOML config with ParseConfig
// (each [plugins.<name>] table is decoded strictly into the plugin's config
// type), builds the enabled plugins with NewManager and LoadPlugins, and
// runs each processing stage with ExecuteStage:
//
//	cfg, err := registry.ParseConfig("elemta.toml", data)
//	mgr := registry.NewManager(cfg, registry.WithHost(host))
//	err = mgr.LoadPlugins(ctx)
//	defer mgr.Close()
//	res, err := mgr.ExecuteStage(ctx, registry.PostReception, registry.NewProcessingContext(msg, session))
//
// ExecuteStage runs a stage's plugins concurrently in dependency waves,
// each under its own timeout, turns errors, timeouts and panics into the
// plugin's on_error verdict, and merges verdicts, scores and header changes
// deterministically (see StageResult).
//
// Plugins never import each other: they read earlier results with Find,
// and take what they need from outside (resolver, clock, logger) from Host.
// Lifecycle methods are optional (Validator, Starter, HealthChecker,
// Closer, SessionEnder); registry/registrytest checks a plugin against the
// whole contract in one call.
package registry
