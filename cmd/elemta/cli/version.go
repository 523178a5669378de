package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/elemta/elemta/internal/buildinfo"
	"github.com/elemta/elemta/pluginhost"
)

// Set by tools/elemta-build with -ldflags -X (dist: in plugins.yaml, and
// the commit of the core checkout built against). Empty in `go build`
// binaries, which carry the revision in their build info instead.
var (
	distName     string
	distVersion  string
	coreRevision string
)

type versionJSON struct {
	Core        string              `json:"core"`
	CoreModule  string              `json:"core_module,omitempty"`
	Revision    string              `json:"revision,omitempty"`
	Dist        string              `json:"dist,omitempty"`
	DistVersion string              `json:"dist_version,omitempty"`
	Go          string              `json:"go"`
	Platform    string              `json:"platform"`
	Settings    map[string]string   `json:"settings,omitempty"`
	Plugins     []pluginVersionJSON `json:"plugins"`
}

type pluginVersionJSON struct {
	Name          string `json:"name"`
	Registered    string `json:"registered,omitempty"`
	Module        string `json:"module,omitempty"`
	ModuleVersion string `json:"module_version,omitempty"`
	// Mismatch explains why Registered and ModuleVersion disagree.
	Mismatch string `json:"mismatch,omitempty"`
}

func (a *app) version(args []string) int {
	fs := a.flagSet("version", "version [--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return ExitError
	}
	v := collectVersion()
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return ExitAccept
	}
	head := "elemta " + v.Core
	if v.Dist != "" {
		head = fmt.Sprintf("%s %s (elemta %s)", v.Dist, orDash(v.DistVersion), v.Core)
	}
	fmt.Fprintf(a.stdout, "%s (%s, %s)\n", head, v.Go, v.Platform)
	if v.Revision != "" {
		fmt.Fprintf(a.stdout, "  revision %s\n", v.Revision)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, p := range v.Plugins {
		line := fmt.Sprintf("  plugin %s\t%s\t%s", p.Name, orDash(p.Registered), orDash(strings.TrimSpace(p.Module+" "+p.ModuleVersion)))
		if p.Mismatch != "" {
			line += "\tWARNING: " + p.Mismatch
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
	return ExitAccept
}

func collectVersion() versionJSON {
	v := versionJSON{Core: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		Dist: distName, DistVersion: distVersion, Revision: coreRevision, Plugins: []pluginVersionJSON{}}
	info, ok := buildinfo.Read()
	if ok {
		if m, found := info.Core(); found {
			v.Core, v.CoreModule = m.EffectiveVersion(), m.Path
		}
		v.Go = info.GoVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Settings = map[string]string{}
		for _, s := range bi.Settings {
			v.Settings[s.Key] = s.Value
		}
		if v.Revision == "" && v.Settings["vcs.revision"] != "" {
			v.Revision = v.Settings["vcs.revision"]
			if v.Settings["vcs.modified"] == "true" {
				v.Revision += "-dirty"
			}
		}
	}
	for _, m := range pluginhost.Modules() {
		p := pluginVersionJSON{Name: m.Name, Registered: m.Version}
		if ok {
			if mod, found := info.ModuleOf(m.Package); found {
				p.Module, p.ModuleVersion = mod.Path, mod.EffectiveVersion()
				if mod.Path != buildinfo.CorePath {
					p.Mismatch = versionMismatch(m.Version, p.ModuleVersion)
				}
			}
		}
		v.Plugins = append(v.Plugins, p)
	}
	return v
}

// versionMismatch compares a third-party plugin's registered version with
// the tag of the module it came from; "" when they agree or one of them is
// not a release version (a local directory, a pseudo-version, none
// registered).
func versionMismatch(registered, modVersion string) string {
	if registered == "" || !semver.IsValid(modVersion) || module.IsPseudoVersion(modVersion) {
		return ""
	}
	reg := registered
	if !strings.HasPrefix(reg, "v") {
		reg = "v" + reg
	}
	if !semver.IsValid(reg) {
		return fmt.Sprintf("registered version %q is not a semantic version; the module is at %s", registered, modVersion)
	}
	if semver.Compare(reg, strings.TrimSuffix(modVersion, "+incompatible")) != 0 {
		return fmt.Sprintf("registers version %s but its module is tagged %s", registered, modVersion)
	}
	return ""
}
