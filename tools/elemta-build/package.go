package main

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

//go:embed pkgfiles
var pkgFiles embed.FS

// packageFormats are the formats -package and packages: accept.
var packageFormats = []string{"deb", "rpm"}

// pkgMTime is the time of every file in a package: packages of the same
// binary are the same bytes (SOURCE_DATE_EPOCH style).
var pkgMTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// packageInput is one binary to package.
type packageInput struct {
	name     string // package name: the binary's name without the platform
	version  string
	platform pluginsfile.Platform
	binary   string
	sbom     string
	hostBin  string // a binary of the same build this machine runs
	dir      string // scratch directory
	outDir   string
	formats  []string
	plugins  []string // compiled in
}

// pluginsLine is the [plugins] table's list of enabled plugins in the
// default config.
var pluginsLine = regexp.MustCompile(`(?m)^plugins = \[([^\]\n]*)\]$`)

// compiledInOnly drops from the default config's enabled plugins those
// this variant does not compile in: the embedded default does the same
// when it is used without a file, but /etc/elemta/elemta.toml is a file
// and `config check` would refuse it.
func compiledInOnly(conf []byte, compiled []string) []byte {
	return pluginsLine.ReplaceAllFunc(conf, func(line []byte) []byte {
		m := pluginsLine.FindSubmatch(line)
		var keep []string
		for _, item := range strings.Split(string(m[1]), ",") {
			name := strings.Trim(strings.TrimSpace(item), `"`)
			if slices.Contains(compiled, name) {
				keep = append(keep, strconv.Quote(name))
			}
		}
		return []byte("plugins = [" + strings.Join(keep, ", ") + "]")
	})
}

// writePackages makes one package per format: /usr/bin/elemta, the build's
// own default config as /etc/elemta/elemta.toml (kept on upgrade), a
// systemd unit running as the elemta user, which the install scripts
// create, and the SBOM under /usr/share/doc.
func writePackages(ctx context.Context, in packageInput) ([]string, error) {
	if in.platform.OS != "linux" {
		return nil, nil
	}
	scratch := filepath.Join(in.dir, "pkg-"+in.name+"-"+in.platform.Arch)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	var cfg bytes.Buffer
	cmd := exec.CommandContext(ctx, in.hostBin, "config", "default")
	cmd.Stdout = &cfg
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("package %s: default config from %s: %w", in.name, in.hostBin, err)
	}
	conf := compiledInOnly(cfg.Bytes(), in.plugins)
	assets := map[string][]byte{"elemta.toml": conf}
	for _, n := range []string{"elemta.service", "postinstall.sh", "preremove.sh", "postremove.sh"} {
		data, err := pkgFiles.ReadFile("pkgfiles/" + n)
		if err != nil {
			return nil, err
		}
		assets[n] = data
	}
	for n, data := range assets {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(n, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(scratch, n), data, mode); err != nil {
			return nil, err
		}
	}
	at := func(n string) string { return filepath.Join(scratch, n) }
	// The package's config must be one this binary accepts.
	if out, err := exec.CommandContext(ctx, in.hostBin, "config", "check", at("elemta.toml")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("package %s: the default config does not pass `config check`: %s", in.name, strings.TrimSpace(string(out)))
	}
	version := strings.TrimPrefix(in.version, "v")
	if version == "" {
		version = "0.0.0"
	}
	var made []string
	for _, format := range in.formats {
		info := &nfpm.Info{
			Name:        in.name,
			Arch:        in.platform.Arch,
			Platform:    "linux",
			Version:     version,
			Maintainer:  "Elemta builder <elemta-build@localhost>",
			Description: "Elemta mail transfer agent (" + in.name + ", built by elemta-build)",
			Homepage:    "https://github.com/elemta/elemta",
			Section:     "mail",
			Priority:    "optional",
			MTime:       pkgMTime,
			Overridables: nfpm.Overridables{
				Contents: files.Contents{
					{Source: in.binary, Destination: "/usr/bin/elemta", FileInfo: &files.ContentFileInfo{Mode: 0o755, MTime: pkgMTime}},
					{Source: at("elemta.toml"), Destination: "/etc/elemta/elemta.toml", Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: pkgMTime}},
					{Source: at("elemta.service"), Destination: "/lib/systemd/system/elemta.service", FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: pkgMTime}},
					{Source: in.sbom, Destination: "/usr/share/doc/" + in.name + "/sbom.cdx.json", FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: pkgMTime}},
				},
				Scripts: nfpm.Scripts{PostInstall: at("postinstall.sh"), PreRemove: at("preremove.sh"), PostRemove: at("postremove.sh")},
			},
		}
		if in.name != "elemta" {
			// Variants install the same files: one at a time.
			info.Provides, info.Conflicts, info.Replaces = []string{"elemta"}, []string{"elemta"}, []string{"elemta"}
		}
		info = nfpm.WithDefaults(info)
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return made, fmt.Errorf("package %s (%s): %w", in.name, format, err)
		}
		pkgr, err := nfpm.Get(format)
		if err != nil {
			return made, err
		}
		path := filepath.Join(in.outDir, pkgr.ConventionalFileName(info))
		f, err := os.Create(path)
		if err != nil {
			return made, err
		}
		if err := pkgr.Package(info, f); err != nil {
			f.Close()
			os.Remove(path)
			return made, fmt.Errorf("package %s (%s): %w", in.name, format, err)
		}
		if err := f.Close(); err != nil {
			return made, err
		}
		made = append(made, path)
	}
	return made, nil
}
