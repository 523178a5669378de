package arc

import (
	"context"
	"testing"

	"github.com/elemta/elemta/pkg/canon"
	"github.com/elemta/elemta/registry"
)

// FuzzValidate feeds arbitrary messages to chain validation, seeded with
// the ValiMail suite: parsing untrusted ARC header fields must never panic,
// and the result is always one of the four values.
func FuzzValidate(f *testing.F) {
	for _, d := range loadSuite(f, "arc-draft-validation-tests.yml") {
		for _, tc := range d.Tests[:min(len(d.Tests), 8)] {
			f.Add(crlf(tc.Message))
		}
	}
	f.Add([]byte("ARC-Seal: i=1; cv=none\r\n\r\n"))
	f.Add([]byte("ARC-Authentication-Results: i=\r\nARC-Message-Signature: ;;;\r\n\r\n"))
	res := &fakeResolver{txt: map[string]string{}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := registry.ParseMessage(raw, registry.Envelope{})
		if err != nil {
			return
		}
		r := validate(context.Background(), res, msg, MaxInstances)
		switch r.Result {
		case registry.AuthNone, registry.AuthPass, registry.AuthFail, registry.AuthTempError:
		default:
			t.Fatalf("result %q", r.Result)
		}
		_ = canon.StripB(raw)
	})
}
