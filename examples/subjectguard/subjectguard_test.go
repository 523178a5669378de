package subjectguard

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestReadmeShowsThisPlugin keeps the top-level README's "Writing a plugin"
// example and this package identical, so the example always compiles and
// works.
func TestReadmeShowsThisPlugin(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("subjectguard.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(code)+"```") {
		t.Fatal("README.md's plugin example differs from examples/subjectguard/subjectguard.go: update one from the other")
	}
}

func TestSubjectGuard(t *testing.T) {
	cfg, err := pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"subjectguard\"]\n[plugins.subjectguard]\nforbidden = \"win big\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := pluginhost.NewManager(cfg)
	if err := m.LoadPlugins(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for subject, want := range map[string]registry.Action{"win big": registry.Reject, "lunch": registry.Accept} {
		msg, err := registry.ParseMessage([]byte("From: a@example.test\r\nSubject: "+subject+"\r\n\r\nhi\r\n"), registry.Envelope{})
		if err != nil {
			t.Fatal(err)
		}
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
		if err != nil {
			t.Fatal(err)
		}
		if sr.Verdict.Action != want {
			t.Errorf("subject %q: %v, want %v", subject, sr.Verdict, want)
		}
	}
}

func TestContract(t *testing.T) {
	registrytest.Run(t, "subjectguard", func(cfg Config, _ registry.Host) (*Guard, error) { return &Guard{cfg}, nil }, registrytest.Options{})
}
