package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// CycloneDX 1.5 JSON (https://cyclonedx.org/docs/1.5/json/), the part an
// SBOM of a Go binary needs: the binary, every module linked in (from its
// build info, so it describes exactly what was compiled, for any target),
// and which plugins each module provides.
type cdxBOM struct {
	BOMFormat    string          `json:"bomFormat"`
	SpecVersion  string          `json:"specVersion"`
	SerialNumber string          `json:"serialNumber"`
	Version      int             `json:"version"`
	Metadata     cdxMetadata     `json:"metadata"`
	Components   []cdxComponent  `json:"components"`
	Dependencies []cdxDependency `json:"dependencies"`
}

type cdxMetadata struct {
	Tools     cdxTools     `json:"tools"`
	Component cdxComponent `json:"component"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	Type       string        `json:"type"`
	BOMRef     string        `json:"bom-ref,omitempty"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Hashes     []cdxHash     `json:"hashes,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxHash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxDependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// purl is the package URL of a Go module version.
func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + url.PathEscape(version)
}

// writeSBOM writes BINARY.cdx.json for a built binary and returns its
// path. plugins maps module paths to the names of the plugins they
// provide. Nothing in it depends on the time or directory of the build.
func writeSBOM(bin, name, version string, plugins []pluginsfile.Plugin) (string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("sbom: read build info of %s: %w", bin, err)
	}
	sum := sha256.Sum256(data)
	byModule := map[string][]string{}
	for _, pl := range plugins {
		mod := pl.Module
		if pl.Builtin() {
			mod = pluginsfile.CorePath
		}
		byModule[mod] = append(byModule[mod], pl.Name)
	}
	if version == "" {
		version = "0.0.0"
	}
	main := cdxComponent{Type: "application", BOMRef: "binary", Name: name, Version: version,
		Hashes: []cdxHash{{Alg: "SHA-256", Content: hex.EncodeToString(sum[:])}},
		Properties: []cdxProperty{
			{Name: "go:version", Value: bi.GoVersion},
			{Name: "go:main", Value: bi.Main.Path},
		}}
	for _, s := range bi.Settings {
		if s.Key == "GOOS" || s.Key == "GOARCH" || s.Key == "CGO_ENABLED" || s.Key == "-tags" {
			main.Properties = append(main.Properties, cdxProperty{Name: "go:build:" + s.Key, Value: s.Value})
		}
	}
	bom := cdxBOM{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		SerialNumber: "urn:uuid:" + uuidFrom(sum[:]),
		Metadata: cdxMetadata{
			Tools:     cdxTools{Components: []cdxComponent{{Type: "application", Name: "elemta-build", Version: toolVersionOrDevel()}}},
			Component: main,
		},
		Components: []cdxComponent{},
	}
	dep := cdxDependency{Ref: "binary", DependsOn: []string{}}
	for _, m := range bi.Deps {
		c := moduleComponent(m)
		if names := byModule[m.Path]; len(names) > 0 {
			slices.Sort(names)
			c.Properties = append(c.Properties, cdxProperty{Name: "elemta:plugins", Value: strings.Join(names, ",")})
		}
		bom.Components = append(bom.Components, c)
		dep.DependsOn = append(dep.DependsOn, c.BOMRef)
	}
	bom.Dependencies = []cdxDependency{dep}
	out, err := json.MarshalIndent(bom, "", "  ")
	if err != nil {
		return "", err
	}
	path := bin + ".cdx.json"
	return path, os.WriteFile(path, append(out, '\n'), 0o644)
}

func moduleComponent(m *debug.Module) cdxComponent {
	version := m.Version
	var props []cdxProperty
	if r := m.Replace; r != nil {
		if r.Version != "" {
			version = r.Version
			props = append(props, cdxProperty{Name: "go:replace", Value: r.Path + " " + r.Version})
		} else {
			version = "(devel)"
			props = append(props, cdxProperty{Name: "go:replace", Value: r.Path})
		}
	}
	if m.Sum != "" {
		props = append(props, cdxProperty{Name: "go:sum", Value: m.Sum})
	}
	return cdxComponent{Type: "library", BOMRef: purl(m.Path, version), Name: m.Path, Version: version,
		PURL: purl(m.Path, version), Properties: props}
}

// uuidFrom makes a version 4 style UUID from a hash, so the serial number
// is the same for the same binary.
func uuidFrom(h []byte) string {
	var b [16]byte
	copy(b[:], h)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b[:])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

func toolVersionOrDevel() string {
	if v := toolVersion(); v != "" {
		return v
	}
	return "(devel)"
}
