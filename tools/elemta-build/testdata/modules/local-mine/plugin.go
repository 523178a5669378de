// Package mine registers the test plugin "mine".
package mine

import "github.com/elemta/elemta/reg"

func init() { reg.Register("mine") }
