package myantivirus

import (
	"context"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// TestUnderManager loads the plugin from config and runs it through the
// stage executor, as the server does.
func TestUnderManager(t *testing.T) {
	cfg, err := pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"myantivirus\"]\n[plugins.myantivirus]\ntimeout = 5\n"))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	mgr := pluginhost.NewManager(cfg)
	if err := mgr.LoadPlugins(context.Background()); err != nil {
		t.Fatalf("load plugins: %v", err)
	}
	t.Cleanup(func() {
		if err := mgr.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	tests := []struct {
		stage   registry.Stage
		results int
	}{
		{registry.PreReception, 0},
		{registry.PostReception, 1},
		{registry.PreQueue, 0},
	}
	msg, err := registry.ParseMessage([]byte("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"), registry.Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.stage.String(), func(t *testing.T) {
			sr, err := mgr.ExecuteStage(context.Background(), tt.stage, registry.NewProcessingContext(msg, nil))
			if err != nil {
				t.Fatalf("ExecuteStage: %v", err)
			}
			if len(sr.Results) != tt.results {
				t.Fatalf("%d results, want %d", len(sr.Results), tt.results)
			}
			if sr.Verdict.Action != registry.Accept {
				t.Errorf("verdict %v, want accept", sr.Verdict)
			}
			if tt.results == 0 {
				return
			}
			r := sr.Results[0]
			scan, ok := r.Data.(*registry.ScanResult)
			if r.Plugin != "myantivirus" || r.Err != nil || !ok || scan.Status != registry.StatusClean || r.Details != "No threats detected" {
				t.Errorf("result %+v (data %+v)", r, r.Data)
			}
		})
	}

	av, err := mgr.GetAntivirusPlugin("myantivirus")
	if err != nil {
		t.Fatalf("GetAntivirusPlugin: %v", err)
	}
	if info := av.GetInfo(); info.Name != "MyAntivirus" || info.Type != registry.PluginTypeAntivirus {
		t.Errorf("GetInfo = %+v", info)
	}
}
