// Package pluginhost runs Elemta's compiled-in plugins: it parses the
// [plugins] part of the config, builds the enabled plugins, runs each
// processing stage and closes them. Plugin authors never import it; they
// write against github.com/elemta/elemta/registry.
//
// The host parses the [plugins] part of its TOML config with ParseConfig
// (each [plugins.<name>] table is decoded strictly into the plugin's config
// type), builds the enabled plugins with NewManager and LoadPlugins, and
// runs each processing stage with ExecuteStage:
//
//	cfg, err := pluginhost.ParseConfig("elemta.toml", data)
//	mgr := pluginhost.NewManager(cfg, pluginhost.WithHost(host))
//	err = mgr.LoadPlugins(ctx)
//	defer mgr.Close()
//	res, err := mgr.ExecuteStage(ctx, registry.PostReception, registry.NewProcessingContext(msg, session))
//
// ExecuteStage runs a stage's plugins concurrently in dependency waves,
// each under its own timeout, turns errors, timeouts and panics into the
// plugin's on_error verdict (removing the header fields a
// registry.HeaderOwner owns), and merges verdicts, scores and header changes
// deterministically (see StageResult). WithObserver reports every plugin
// call and stage to an Observer (the host's Prometheus metrics);
// WithPluginLogger and WithPluginMetrics hand each instance its own
// Host.Logger and Host.Metrics.
//
// An instance with isolation = "process" runs in worker processes: the
// Manager builds, instead of the plugin, a stand-in (isolated.go) that
// implements the same interfaces and forwards each call over a socketpair
// (wire.go: length-prefixed gob frames) to a worker, this executable
// re-executed (RunWorker, worker.go), which builds the plugin from the same
// config. process.go starts, kills and reaps workers; the stand-in
// replaces dead ones with backoff. The executor does not know the
// difference.
//
// Modules, Lookup and DefaultConfig describe the compiled-in plugins;
// CheckManifest compares them with the list the build selected.
package pluginhost
