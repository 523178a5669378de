package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	modzip "golang.org/x/mod/zip"
)

// servedCore is the version under which the test proxy serves this
// checkout as the core module.
const servedCore = "v1.9.0"

// diskFile is a file of a module zip read from disk.
type diskFile struct{ rel, abs string }

func (f diskFile) Path() string                 { return f.rel }
func (f diskFile) Lstat() (os.FileInfo, error)  { return os.Lstat(f.abs) }
func (f diskFile) Open() (io.ReadCloser, error) { return os.Open(f.abs) }

// memFile is a file of a module zip held in memory (a rewritten go.mod).
type memFile struct {
	rel  string
	data []byte
	info os.FileInfo
}

func (f memFile) Path() string                 { return f.rel }
func (f memFile) Lstat() (os.FileInfo, error)  { return f.info, nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

// serveModule writes mod@version into a file:// proxy tree.
func serveModule(t *testing.T, proxy string, mv module.Version, gomod []byte, files []modzip.File) {
	t.Helper()
	esc, err := module.EscapePath(mv.Path)
	require.NoError(t, err)
	vdir := filepath.Join(proxy, esc, "@v")
	require.NoError(t, os.MkdirAll(vdir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(vdir, mv.Version+".mod"), gomod, 0o644))
	info := fmt.Sprintf(`{"Version":%q,"Time":"2026-01-01T00:00:00Z"}`, mv.Version)
	require.NoError(t, os.WriteFile(filepath.Join(vdir, mv.Version+".info"), []byte(info), 0o644))
	var zip bytes.Buffer
	require.NoError(t, modzip.Create(&zip, mv, files))
	require.NoError(t, os.WriteFile(filepath.Join(vdir, mv.Version+".zip"), zip.Bytes(), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(vdir, "list"), []byte(mv.Version+"\n"), 0o644))
}

// gitFiles lists the files of the checkout at root a module zip holds:
// tracked and untracked-but-not-ignored (so the test sees uncommitted
// work), without those of nested modules (modzip.Create omits them).
func gitFiles(t *testing.T, root, sub string) []diskFile {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", sub)
	cmd.Dir = root
	out, err := cmd.Output()
	require.NoError(t, err)
	var files []diskFile
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		abs := filepath.Join(root, rel)
		if st, err := os.Lstat(abs); err != nil || !st.Mode().IsRegular() {
			continue // deleted in the work tree, or a link
		}
		r, _ := filepath.Rel(filepath.Join(root, sub), abs)
		files = append(files, diskFile{rel: filepath.ToSlash(r), abs: abs})
	}
	return files
}

// coreProxy serves this checkout as github.com/elemta/elemta v1.9.0 and
// examples/thirdparty as example.com/elemta-headerlist v1.0.0 (its go.mod
// requiring that core instead of replacing it), in front of the machine's
// module cache as a second file:// proxy for the core's dependencies, with
// a private module cache: nothing comes from a network or a checkout.
func coreProxy(t *testing.T) (proxyURL string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds Elemta binaries")
	}
	realCache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	require.NoError(t, err)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	proxy := t.TempDir()

	var core []modzip.File
	for _, f := range gitFiles(t, root, ".") {
		core = append(core, f)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	serveModule(t, proxy, module.Version{Path: "github.com/elemta/elemta", Version: servedCore}, gomod, core)

	var hl []modzip.File
	var hlMod []byte
	for _, f := range gitFiles(t, root, "examples/thirdparty") {
		if f.rel != "go.mod" {
			hl = append(hl, f)
			continue
		}
		data, err := os.ReadFile(f.abs)
		require.NoError(t, err)
		s := strings.Replace(string(data), "github.com/elemta/elemta v0.0.0-00010101000000-000000000000", "github.com/elemta/elemta "+servedCore, 1)
		s = s[:strings.Index(s, "// For working on the plugin")]
		hlMod = []byte(s)
		st, err := os.Lstat(f.abs)
		require.NoError(t, err)
		hl = append(hl, memFile{rel: "go.mod", data: hlMod, info: st})
	}
	require.NotNil(t, hlMod)
	serveModule(t, proxy, module.Version{Path: "example.com/elemta-headerlist", Version: "v1.0.0"}, hlMod, hl)

	url := "file://" + filepath.ToSlash(proxy)
	t.Setenv("GOPROXY", url+",file://"+filepath.ToSlash(filepath.Join(strings.TrimSpace(string(realCache)), "cache", "download")))
	t.Setenv("GOSUMDB", "off")
	t.Setenv("GONOSUMDB", "")
	t.Setenv("GOPRIVATE", "")
	t.Setenv("GOTOOLCHAIN", "local")
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("GOFLAGS", "-modcacherw")
	t.Setenv("GOOS", "")
	t.Setenv("GOARCH", "")
	return url
}

const noCheckoutPlugins = `platforms: [linux/amd64, linux/arm64]
dist:
  name: acme
  version: 2.1.0
plugins:
  - name: contentfilter
  - name: dkim
  - name: headerlist
    module: example.com/elemta-headerlist
    version: v1.0.0
    import: example.com/elemta-headerlist/headerlist
variants:
  standard: [contentfilter, dkim, headerlist]
`

func sha(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestNoCheckout is the builder as a downstream user runs it: `go run
// github.com/elemta/elemta/tools/elemta-build@VERSION` in a directory
// holding nothing but a plugins file naming two built-ins and a
// third-party module, for linux/amd64 and linux/arm64.
func TestNoCheckout(t *testing.T) {
	coreProxy(t)
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the linux/amd64 binary")
	}
	work := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(work, "plugins.yaml"), []byte(noCheckoutPlugins), 0o644))
	cmd := exec.Command("go", "run", "github.com/elemta/elemta/tools/elemta-build@"+servedCore, "-variant", "standard", "-package", "deb,rpm", "-o", "out/")
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	amd64 := filepath.Join(work, "out", "acme-standard-linux-amd64")
	arm64 := filepath.Join(work, "out", "acme-standard-linux-arm64")
	deb := filepath.Join(work, "out", "acme-standard_2.1.0_amd64.deb")
	assert.Contains(t, string(out), "out/acme-standard-linux-arm64: contentfilter, dkim, headerlist")
	for _, f := range []string{deb, filepath.Join(work, "out", "acme-standard_2.1.0_arm64.deb"),
		filepath.Join(work, "out", "acme-standard-2.1.0-1.x86_64.rpm"), filepath.Join(work, "out", "acme-standard-2.1.0-1.aarch64.rpm")} {
		assert.FileExists(t, f)
	}

	t.Run("sbom names every plugin module", func(t *testing.T) {
		for _, bin := range []string{amd64, arm64} {
			data, err := os.ReadFile(bin + ".cdx.json")
			require.NoError(t, err)
			var bom cdxBOM
			require.NoError(t, json.Unmarshal(data, &bom))
			assert.Equal(t, "CycloneDX", bom.BOMFormat)
			assert.Equal(t, sha(t, bin), bom.Metadata.Component.Hashes[0].Content)
			plugins := map[string]string{}
			for _, c := range bom.Components {
				for _, p := range c.Properties {
					if p.Name == "elemta:plugins" {
						plugins[c.Name+"@"+c.Version] = p.Value
					}
				}
			}
			assert.Equal(t, map[string]string{
				"github.com/elemta/elemta@" + servedCore: "contentfilter,dkim",
				"example.com/elemta-headerlist@v1.0.0":   "headerlist",
			}, plugins, bin)
		}
	})
	t.Run("deb installs", func(t *testing.T) { installDeb(t, deb) })

	t.Run("arm64 is an arm64 ELF", func(t *testing.T) {
		f, err := elf.Open(arm64)
		require.NoError(t, err)
		defer f.Close()
		assert.Equal(t, elf.EM_AARCH64, f.Machine)
	})
	t.Run("plugins list", func(t *testing.T) {
		listed, err := exec.Command(amd64, "plugins", "list", "--json").Output()
		require.NoError(t, err)
		var list []pluginJSONLine
		require.NoError(t, json.Unmarshal(listed, &list), "%s", listed)
		byName := map[string]pluginJSONLine{}
		for _, p := range list {
			byName[p.Name] = p
		}
		assert.Len(t, byName, 3)
		assert.Equal(t, "v1.0.0", byName["headerlist"].ModuleVersion)
		assert.Equal(t, servedCore, byName["dkim"].ModuleVersion)
	})
	t.Run("version", func(t *testing.T) {
		v, err := exec.Command(amd64, "version", "--json").Output()
		require.NoError(t, err)
		var raw map[string]any
		require.NoError(t, json.Unmarshal(v, &raw), "%s", v)
		assert.Equal(t, servedCore, raw["core"])
		assert.Equal(t, "acme", raw["dist"])
		assert.Equal(t, "2.1.0", raw["dist_version"])
		settings, _ := raw["settings"].(map[string]any)
		assert.Equal(t, "0", settings["CGO_ENABLED"])
		assert.Equal(t, "true", settings["-trimpath"])
	})
	t.Run("static", func(t *testing.T) {
		if _, err := exec.LookPath("ldd"); err != nil {
			t.Skip("no ldd")
		}
		out, _ := exec.Command("ldd", amd64).CombinedOutput()
		assert.Contains(t, string(out), "not a dynamic executable")
	})
	t.Run("no build path in the binary", func(t *testing.T) {
		data, err := os.ReadFile(amd64)
		require.NoError(t, err)
		assert.False(t, bytes.Contains(data, []byte(work)), "the binary holds %s", work)
		assert.False(t, bytes.Contains(data, []byte(os.TempDir()+"/elemta-build-")), "the binary holds the build directory")
	})
	t.Run("same bytes from another directory", func(t *testing.T) {
		// In process this time, with -core-version since the test binary
		// is no released builder.
		other := t.TempDir()
		cfg := filepath.Join(other, "plugins.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(noCheckoutPlugins), 0o644))
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"-config", cfg, "-core-version", servedCore, "-variant", "standard", "-platform", "linux/amd64", "-package", "deb", "-o", other + "/"}, &stdout, &stderr)
		require.Equal(t, 0, code, stderr.String())
		if !assert.Equal(t, sha(t, amd64), sha(t, filepath.Join(other, "acme-standard-linux-amd64"))) {
			a, _ := exec.Command("go", "version", "-m", amd64).Output()
			b, _ := exec.Command("go", "version", "-m", filepath.Join(other, "acme-standard-linux-amd64")).Output()
			t.Logf("go run builder:\n%s\nin-process builder:\n%s", a, b)
		}
		// The SBOM names the builder's version, so the same builder again
		// for the SBOM and the package.
		third := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(third, "plugins.yaml"), []byte(noCheckoutPlugins), 0o644))
		cmd := exec.Command("go", "run", "github.com/elemta/elemta/tools/elemta-build@"+servedCore, "-variant", "standard", "-platform", "linux/amd64", "-package", "deb")
		cmd.Dir = third
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, sha(t, amd64), sha(t, filepath.Join(third, "bin", "acme-standard-linux-amd64")))
		assert.Equal(t, sha(t, amd64+".cdx.json"), sha(t, filepath.Join(third, "bin", "acme-standard-linux-amd64.cdx.json")))
		assert.Equal(t, sha(t, deb), sha(t, filepath.Join(third, "bin", "acme-standard_2.1.0_amd64.deb")))
	})
}

// installDeb installs the package with dpkg, runs the binary from
// /usr/bin as the package's user, and purges it. It needs root, dpkg and
// a machine without an elemta package or /usr/bin/elemta already.
func installDeb(t *testing.T, deb string) {
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg")
	}
	if _, err := os.Stat("/usr/bin/elemta"); err == nil {
		t.Skip("/usr/bin/elemta exists: not touching this machine's install")
	}
	if out, err := exec.Command("dpkg-query", "-W", "acme-standard").CombinedOutput(); err == nil {
		t.Skipf("acme-standard is installed already: %s", out)
	}
	t.Cleanup(func() {
		out, err := exec.Command("dpkg", "--purge", "acme-standard").CombinedOutput()
		assert.NoError(t, err, "%s", out)
		assert.NoFileExists(t, "/usr/bin/elemta")
		assert.NoFileExists(t, "/etc/elemta/elemta.toml")
		_, err = exec.Command("getent", "passwd", "elemta").Output()
		assert.Error(t, err, "purge removes the elemta user")
	})
	out, err := exec.Command("dpkg", "-i", deb).CombinedOutput()
	require.NoError(t, err, "%s", out)

	v, err := exec.Command("/usr/bin/elemta", "version").CombinedOutput()
	require.NoError(t, err, "%s", v)
	assert.Contains(t, string(v), "acme 2.1.0 (elemta "+servedCore)
	assert.Contains(t, string(v), "example.com/elemta-headerlist v1.0.0")
	assert.FileExists(t, "/lib/systemd/system/elemta.service")
	assert.FileExists(t, "/usr/share/doc/acme-standard/sbom.cdx.json")
	st, err := os.Stat("/var/lib/elemta")
	require.NoError(t, err)
	assert.True(t, st.IsDir())
	// The service's own first step, as its user.
	check, err := exec.Command("runuser", "-u", "elemta", "--", "/usr/bin/elemta", "config", "check", "/etc/elemta/elemta.toml").CombinedOutput()
	require.NoError(t, err, "%s", check)
	assert.Contains(t, string(check), "/etc/elemta/elemta.toml: OK")
}

type pluginJSONLine struct {
	Name          string `json:"name"`
	Module        string `json:"module"`
	ModuleVersion string `json:"module_version"`
}

// TestEntryErrors checks that what goes wrong with an entry is reported
// at its plugins.yaml line, against the same proxy (no binary is built).
func TestEntryErrors(t *testing.T) {
	coreProxy(t)
	entry := func(extra string) string {
		return "plugins:\n  - name: contentfilter\n  - name: headerlist\n    module: example.com/elemta-headerlist\n" + extra
	}
	tests := []struct {
		name, yaml string
		env        func(t *testing.T)
		want       []string
	}{
		{name: "missing version", yaml: entry("    version: v1.0.7\n    import: example.com/elemta-headerlist/headerlist\n"), want: []string{
			`plugins.yaml:3: plugin "headerlist": module example.com/elemta-headerlist@v1.0.7: no version v1.0.7 of module example.com/elemta-headerlist (versions on GOPROXY: v1.0.0)`}},
		{name: "wrong import", yaml: entry("    version: v1.0.0\n    import: example.com/elemta-headerlist/nope\n"), want: []string{
			`plugins.yaml:3: plugin "headerlist": import example.com/elemta-headerlist/nope is not a package of module example.com/elemta-headerlist`}},
		{name: "module root is no package", yaml: entry("    version: v1.0.0\n"), want: []string{
			`plugins.yaml:3: plugin "headerlist": module root (no "import" given) example.com/elemta-headerlist is not a package`}},
		{name: "shadows a built-in", yaml: "plugins:\n  - name: spf\n    module: example.com/elemta-headerlist\n    version: v1.0.0\n", want: []string{
			`plugins.yaml:2: plugin "spf": module example.com/elemta-headerlist would replace the built-in plugin of that name`, `replace_builtin: true`}},
		{name: "checksum database", yaml: entry("    version: v1.0.0\n    import: example.com/elemta-headerlist/headerlist\n"), env: sumDB, want: []string{
			`plugins.yaml:3: plugin "headerlist": module example.com/elemta-headerlist@v1.0.0: the checksum database (GOSUMDB) could not verify example.com/elemta-headerlist`,
			"set GONOSUMDB=example.com/elemta-headerlist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != nil {
				tt.env(t)
			}
			cfg := writeConfig(t, tt.yaml)
			out := filepath.Join(t.TempDir(), "elemta")
			_, err := build(context.Background(), options{config: cfg, output: out, coreVersion: servedCore, check: true})
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NoFileExists(t, out)
		})
	}
}

// sumDB points GOSUMDB at a checksum database that does not answer
// (127.0.0.1:1), exempting every module but the plugin, with a fresh
// module cache so nothing is already verified.
func sumDB(t *testing.T) {
	_, vkey, err := note.GenerateKey(rand.Reader, "sum.elemta.test")
	require.NoError(t, err)
	t.Setenv("GOSUMDB", vkey+" http://127.0.0.1:1")
	t.Setenv("GONOSUMDB", "github.com,golang.org,go.etcd.io,go.uber.org,go.yaml.in,blitiri.com.ar,go4.org,gopkg.in")
	t.Setenv("GOMODCACHE", t.TempDir())
}

// TestCheckoutReproducible builds the minimal selection from two copies of
// this checkout at different paths: the replace directive points at a
// relative link inside the build module, so the binaries are the same
// bytes and name neither copy.
func TestCheckoutReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two Elemta binaries")
	}
	t.Setenv("GOPROXY", "off") // everything the minimal build needs is in the module cache
	t.Setenv("GOFLAGS", "")
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	files := gitFiles(t, root, ".")
	var bins []string
	for _, sub := range []string{"a", filepath.Join("deeper", "b")} {
		clone := filepath.Join(t.TempDir(), sub)
		for _, f := range files {
			if strings.HasPrefix(f.rel, "tools/elemta-build/testdata/") || strings.HasPrefix(f.rel, "examples/") {
				continue
			}
			data, err := os.ReadFile(f.abs)
			require.NoError(t, err)
			dst := filepath.Join(clone, filepath.FromSlash(f.rel))
			require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
			require.NoError(t, os.WriteFile(dst, data, 0o644))
		}
		cfg := filepath.Join(clone, "my.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte("plugins:\n  - name: contentfilter\n"), 0o644))
		out := filepath.Join(clone, "bin", "elemta")
		_, err := build(context.Background(), options{config: cfg, output: out, check: true, noSBOM: true})
		require.NoError(t, err)
		data, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.False(t, bytes.Contains(data, []byte(clone)), "the binary names its checkout %s", clone)
		bins = append(bins, out)
	}
	assert.Equal(t, sha(t, bins[0]), sha(t, bins[1]))
	info, err := exec.Command("go", "version", "-m", bins[0]).Output()
	require.NoError(t, err)
	assert.Contains(t, string(info), "=>\t./core\t(devel)")
}
