package cli_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/elemta/elemta/cmd/elemta/cli"
)

// TestTwoInstancesOfOnePlugin runs contentfilter and contentfilter/strict,
// each with its own rules, in one stage, and checks that plugins list and
// scan name both instances.
func TestTwoInstancesOfOnePlugin(t *testing.T) {
	r := run(t, "plugins", "list", "--json", "--config", "testdata/instances.toml")
	check(t, r, cli.ExitAccept, nil, nil)
	var list []struct {
		Name      string   `json:"name"`
		Enabled   bool     `json:"enabled"`
		Instances []string `json:"instances"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("plugins list --json: %v\n%s", err, r.stdout)
	}
	i := slices.IndexFunc(list, func(p struct {
		Name      string   `json:"name"`
		Enabled   bool     `json:"enabled"`
		Instances []string `json:"instances"`
	}) bool {
		return p.Name == "contentfilter"
	})
	if i < 0 {
		t.Fatalf("contentfilter not listed:\n%s", r.stdout)
	}
	if want := []string{"contentfilter", "contentfilter/strict"}; !list[i].Enabled || !slices.Equal(list[i].Instances, want) {
		t.Errorf("contentfilter: enabled %v, instances %v, want %v", list[i].Enabled, list[i].Instances, want)
	}

	type report struct {
		File    string `json:"file"`
		Verdict struct {
			Action string `json:"action"`
		} `json:"verdict"`
		DecidedBy string `json:"decided_by"`
		Stages    []struct {
			Stage   string `json:"stage"`
			Results []struct {
				Plugin  string `json:"plugin"`
				Verdict struct {
					Action string `json:"action"`
				} `json:"verdict"`
				AddHeaders []struct {
					Name, Value string
				} `json:"add_headers"`
			} `json:"results"`
		} `json:"stages"`
	}
	tests := []struct {
		file, action, decidedBy string
		tagged                  bool
	}{
		{"testdata/instances/both.eml", "reject", "contentfilter/strict", true},
		{"testdata/instances/tag.eml", "accept", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r := run(t, "scan", "--json", "--config", "testdata/instances.toml", tt.file)
			var reports []report
			if err := json.Unmarshal([]byte(r.stdout), &reports); err != nil || len(reports) != 1 {
				t.Fatalf("scan --json: %v (%d reports)\n%s\n%s", err, len(reports), r.stdout, r.stderr)
			}
			rep := reports[0]
			if rep.Verdict.Action != tt.action || rep.DecidedBy != tt.decidedBy {
				t.Errorf("verdict %s by %q, want %s by %q", rep.Verdict.Action, rep.DecidedBy, tt.action, tt.decidedBy)
			}
			var plugins []string
			for _, st := range rep.Stages {
				if st.Stage != "post-reception" {
					continue
				}
				for _, res := range st.Results {
					plugins = append(plugins, res.Plugin)
					if res.Plugin == "contentfilter" && tt.tagged && len(res.AddHeaders) != 1 {
						t.Errorf("contentfilter added %v, want the X-Tagged header", res.AddHeaders)
					}
					if res.Plugin == "contentfilter/strict" && res.Verdict.Action != tt.action {
						t.Errorf("contentfilter/strict: %s, want %s", res.Verdict.Action, tt.action)
					}
				}
			}
			if want := []string{"contentfilter", "contentfilter/strict"}; !slices.Equal(plugins, want) {
				t.Errorf("post-reception results from %v, want %v", plugins, want)
			}
		})
	}
}
