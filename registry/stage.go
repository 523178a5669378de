package registry

import (
	"fmt"
	"strings"
)

// Stage is a point in message processing where plugins run.
type Stage int

// The processing stages, in the order a message passes them.
const (
	PreReception  Stage = iota // before the message is accepted: connection, HELO, MAIL, RCPT
	PostReception              // once DATA is complete
	PreQueue                   // before the message is written to the queue
	PreDelivery                // before each delivery attempt
	PostDelivery               // after delivery completed or failed for good
	numStages
)

var stageNames = [numStages]string{"pre-reception", "post-reception", "pre-queue", "pre-delivery", "post-delivery"}

// Stages lists every stage in processing order.
func Stages() []Stage {
	return []Stage{PreReception, PostReception, PreQueue, PreDelivery, PostDelivery}
}

// String returns the stage's config name, e.g. "post-reception".
func (s Stage) String() string {
	if s < 0 || s >= numStages {
		return fmt.Sprintf("stage(%d)", int(s))
	}
	return stageNames[s]
}

// ParseStage accepts the config name of a stage ("pre-queue"); underscores
// and case are tolerated ("Pre_Queue").
func ParseStage(name string) (Stage, error) {
	n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-")
	for i, s := range stageNames {
		if s == n {
			return Stage(i), nil
		}
	}
	return 0, fmt.Errorf("unknown stage %q (valid: %s)", name, strings.Join(stageNames[:], ", "))
}

// MarshalText implements encoding.TextMarshaler.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Stage) UnmarshalText(b []byte) error {
	v, err := ParseStage(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
