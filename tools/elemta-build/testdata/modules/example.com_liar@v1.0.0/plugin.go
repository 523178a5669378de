// Package liar registers the test plugin "somethingelse".
package liar

import "github.com/elemta/elemta/reg"

func init() { reg.Register("somethingelse") }
