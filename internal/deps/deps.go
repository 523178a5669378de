//go:build tools

// Package deps pins the project's chosen dependencies in go.mod while the
// packages that use them are being written. Removed once each is imported.
package deps

import (
	_ "blitiri.com.ar/go/spf"
	_ "github.com/dutchcoders/go-clamd"
	_ "github.com/emersion/go-msgauth/dkim"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/stretchr/testify/require"
	_ "go.etcd.io/bbolt"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/mod/semver"
	_ "golang.org/x/net/publicsuffix"
	_ "golang.org/x/sync/errgroup"
)
