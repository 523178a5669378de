// Package good registers the test plugin "good".
package good

import "github.com/elemta/elemta/reg"

func init() { reg.Register("good") }
