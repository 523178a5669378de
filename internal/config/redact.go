package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Redacted replaces a secret's value in Redacted's output.
const RedactedValue = "[redacted]"

// secretWords mark a key whose value is a secret.
var secretWords = []string{"password", "passwd", "secret", "token", "private_key", "credential", "api_key", "apikey"}

// Redacted returns the config in force as plain data (tables as maps,
// keys as in the file, every default filled in), with secrets replaced by
// RedactedValue: the values of keys naming a password, secret, token,
// private key or credential, PEM blocks, and passwords in URLs. A secret
// kept in a file is shown as its path (token_file, auth_file), never read.
func (c *Config) Redacted() (map[string]any, error) {
	out := map[string]any{"file": c.File}
	for key, v := range map[string]any{"server": c.Server, "dns": c.DNS, "admin": c.Admin, "log": c.Log} {
		m, err := toMap(v)
		if err != nil {
			return nil, fmt.Errorf("config [%s]: %w", key, err)
		}
		out[key] = m
	}
	plugins := map[string]any{"enabled": c.Plugins.Enabled, "plugins": c.Plugins.Plugins,
		"max_concurrency": c.Plugins.MaxConcurrency, "default_timeout": c.Plugins.DefaultTimeout.String()}
	for _, name := range c.Plugins.Plugins {
		s, err := c.Plugins.Settings(name)
		if err != nil {
			return nil, err
		}
		m, err := toMap(s.Value)
		if err != nil {
			return nil, fmt.Errorf("config [plugins.%s]: %w", name, err)
		}
		stages := make([]string, len(s.Stages))
		for i, st := range s.Stages {
			stages[i] = st.String()
		}
		m["timeout"], m["on_error"], m["stages"] = s.Timeout.String(), s.OnError.String(), stages
		plugins[name] = m
	}
	out["plugins"] = plugins
	return redact(out).(map[string]any), nil
}

// toMap turns a config struct into a map with its TOML keys.
func toMap(v any) (map[string]any, error) {
	b, err := toml.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := toml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	if strings.HasSuffix(k, "_file") { // a path, not the secret
		return false
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if secretKey(k) && !empty(e) {
				x[k] = RedactedValue
				continue
			}
			x[k] = redact(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = redact(e)
		}
		return x
	case string:
		return redactString(x)
	}
	return v
}

func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	}
	return false
}

// redactString hides a PEM block and the password of a URL.
func redactString(s string) string {
	if strings.Contains(s, "-----BEGIN") {
		return RedactedValue
	}
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "redacted")
			return u.String()
		}
	}
	return s
}
