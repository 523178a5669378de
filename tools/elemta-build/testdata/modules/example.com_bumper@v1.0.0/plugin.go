// Package bumper registers the test plugin "bumper".
package bumper

import "github.com/elemta/elemta/reg"

func init() { reg.Register("bumper") }
