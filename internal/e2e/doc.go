// Package e2e holds Elemta's end-to-end tests: a real `elemta serve`
// (serve.Start on 127.0.0.1:0 with a temporary spool and Maildir root),
// real plugins loaded from a TOML config exactly as the binary loads it
// (internal/config.Parse, pluginhost.NewManager with a Host), the loopback
// services of tools/testenv (unbound, clamd), and SMTP clients we did not
// write: swaks (a subprocess) and Go's net/smtp.
//
// The package has no code outside its tests; see harness_test.go.
package e2e
