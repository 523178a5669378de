// Package needsnewgood registers the test plugin "needsnewgood".
package needsnewgood

import "github.com/elemta/elemta/reg"

func init() { reg.Register("needsnewgood") }
