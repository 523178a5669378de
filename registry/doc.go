// Package registry is the package an Elemta plugin is written against: it
// registers the plugin, and holds the types a plugin sees at work (the
// message, the processing context, results and verdicts, the Host it gets
// its resolver, clock and logger from) and the original module's
// capability interfaces. The host side, which builds, runs and closes
// plugins, is github.com/elemta/elemta/pluginhost; a plugin never needs it.
//
// A plugin package calls Register from init() with a Module: its name,
// declared types, stages, ordering constraints, typed config with defaults
// and constructor. Register checks the module at once (a duplicate or
// invalid name, a nil constructor, or a declared type the plugin does not
// implement panics, naming the packages), so mistakes show at the first
// `go test`.
//
// Plugins never import each other: they read earlier results with Find,
// and take what they need from outside (resolver, clock, logger) from Host.
// Lifecycle methods are optional (Validator, Starter, HealthChecker,
// Closer, SessionEnder); registry/registrytest checks a plugin against the
// whole contract in one call.
//
// A plugin whose verdict lives in header fields it writes (and removes from
// incoming messages, so that they cannot be forged) names them with
// HeaderOwner on its config type: when a call of the plugin fails, the host
// removes those fields, so an on_error of "accept" never lets a sender's
// forged verdict through.
package registry
