package contentfilter

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kdomanski/iso9660"
)

// errArchiveStop ends the inspection of archives (not the MIME walk) at an
// archive limit.
var errArchiveStop = errors.New("archive limit reached")

// archive looks into b, a container of format found at where (a part or a
// member), at archive depth depth (1 for an attached archive). names are
// the container's own names, for the formats whose member has none
// (gzip, bzip2). It returns ctx's error or errArchiveStop; what cannot be
// opened is recorded as uninspectable.
func (w *walker) archive(where, format string, names []string, b []byte, depth int) error {
	if depth > w.p.maxArchiveDepth {
		return w.archiveLimit("%s: %s archive at nesting depth %d, max_archive_depth is %d", where, format, depth, w.p.maxArchiveDepth)
	}
	switch format {
	case "zip":
		return w.zip(where, b, depth)
	case "tar":
		return w.tar(where, b, depth)
	case "gzip", "bzip2":
		return w.stream(where, format, names, b, depth)
	case "iso":
		return w.iso(where, b, depth)
	}
	w.uninspectable("%s: %s archive: the filter cannot open this format", where, format)
	return nil
}

func (w *walker) zip(where string, b []byte, depth int) error {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		w.uninspectable("%s: zip archive does not open: %v", where, err)
		return nil
	}
	var declared uint64
	for _, f := range zr.File {
		declared += f.UncompressedSize64
	}
	if err := w.checkRatio(where, "zip", declared, len(b)); err != nil {
		return err
	}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") && f.UncompressedSize64 == 0 {
			continue // a directory
		}
		enc := f.Flags&0x1 != 0
		err := w.member(where, []string{f.Name}, int64(f.UncompressedSize64), enc, depth, func() (io.ReadCloser, error) { return f.Open() })
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) tar(where string, b []byte, depth int) error {
	tr := tar.NewReader(bytes.NewReader(b))
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if n == 0 {
				w.uninspectable("%s: tar archive does not open: %v", where, err)
			} else {
				w.uninspectable("%s: tar archive after member %d: %v", where, n, err)
			}
			return nil
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA && h.Typeflag != tar.TypeGNUSparse {
			// Directories, links and devices hold no bytes; their names still count.
			if err := w.member(where, []string{h.Name}, 0, false, depth, nil); err != nil {
				return err
			}
			continue
		}
		err = w.member(where, []string{h.Name}, h.Size, false, depth, func() (io.ReadCloser, error) { return io.NopCloser(tr), nil })
		if err != nil {
			return err
		}
	}
}

// stream opens a compressed stream (gzip, bzip2): one member, named by the
// gzip header or by the container's name without its suffix.
func (w *walker) stream(where, format string, names []string, b []byte, depth int) error {
	var r io.Reader
	var inner []string
	switch format {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			w.uninspectable("%s: gzip stream does not open: %v", where, err)
			return nil
		}
		zr.Multistream(true)
		r = zr
		if zr.Name != "" {
			inner = appendNew(inner, zr.Name)
		}
	case "bzip2":
		r = bzip2.NewReader(bytes.NewReader(b))
	}
	for _, n := range names {
		lower := strings.ToLower(n)
		for _, s := range []struct{ suf, repl string }{{".tgz", ".tar"}, {".tbz2", ".tar"}, {".tbz", ".tar"}, {".gz", ""}, {".gzip", ""}, {".bz2", ""}} {
			if strings.HasSuffix(lower, s.suf) && len(n) > len(s.suf) {
				inner = appendNew(inner, n[:len(n)-len(s.suf)]+s.repl)
				break
			}
		}
	}
	// The most a ratio-abiding stream may expand to, and what the byte
	// budget leaves: reading one byte more proves the limit exceeded.
	byRatio := int64(len(b)) * int64(w.p.maxArchiveRatio)
	most := min(byRatio, w.p.maxArchiveBytes-w.archBytes)
	data, err := io.ReadAll(io.LimitReader(r, most+1))
	if int64(len(data)) > most {
		if most == byRatio {
			return w.archiveLimit("%s: %s stream expands more than %d times (max_archive_ratio)", where, format, w.p.maxArchiveRatio)
		}
		return w.archiveLimit("%s: %s stream expands past max_archive_bytes (%d)", where, format, w.p.maxArchiveBytes)
	}
	if err != nil {
		w.uninspectable("%s: %s stream: %v (the %d bytes before the error were inspected)", where, format, err, len(data))
	}
	if len(inner) == 0 {
		inner = []string{""}
	}
	return w.member(where, inner, int64(len(data)), false, depth, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

func appendNew(list []string, s string) []string {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}

func (w *walker) iso(where string, b []byte, depth int) error {
	img, err := iso9660.OpenImage(bytes.NewReader(b))
	if err != nil {
		w.uninspectable("%s: ISO 9660 image does not open: %v", where, err)
		return nil
	}
	if hasJoliet(b) {
		// Windows shows the Joliet names, which the library does not read
		// and which may differ from the ISO 9660 names checked below.
		w.uninspectable("%s: ISO 9660 image has Joliet names, which the filter cannot read (its ISO 9660 names were checked)", where)
	}
	root, err := img.RootDir()
	if err != nil {
		w.uninspectable("%s: ISO 9660 image has no root directory: %v", where, err)
		return nil
	}
	var walk func(dir *iso9660.File, prefix string, level int) error
	walk = func(dir *iso9660.File, prefix string, level int) error {
		if dir.Size() > int64(len(b)) {
			w.uninspectable("%s: ISO 9660 directory %q is larger than the image", where, prefix)
			return nil
		}
		children, err := dir.GetChildren()
		if err != nil {
			w.uninspectable("%s: ISO 9660 directory %q: %v", where, prefix, err)
			return nil
		}
		for _, c := range children {
			name := prefix + c.Name()
			if c.IsDir() {
				// Directories count as members, which bounds a directory
				// that contains itself.
				if err := w.member(where, []string{name + "/"}, 0, false, depth, nil); err != nil {
					return err
				}
				if err := walk(c, name+"/", level+1); err != nil {
					return err
				}
				continue
			}
			if err := w.member(where, []string{name}, c.Size(), false, depth, func() (io.ReadCloser, error) { return io.NopCloser(c.Reader()), nil }); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root, "", 0)
}

// hasJoliet reports a supplementary volume descriptor (type 2) among the
// volume descriptors that start at sector 16.
func hasJoliet(b []byte) bool {
	for off := 16 * 2048; off+6 <= len(b) && off < 64*2048; off += 2048 {
		if string(b[off+1:off+6]) != "CD001" || b[off] == 255 {
			return false
		}
		if b[off] == 2 {
			return true
		}
	}
	return false
}

// member inspects one archive member: its names and detected type go
// through the attachment rules, and a member that is itself an archive is
// opened in turn. open is nil for members without content (directories,
// links); size is the uncompressed size the archive declares.
func (w *walker) member(container string, names []string, size int64, encrypted bool, depth int, open func() (io.ReadCloser, error)) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.archMembers++
	if w.archMembers > w.p.maxArchiveMembers {
		return w.archiveLimit("%s: more than %d archive members (max_archive_members)", container, w.p.maxArchiveMembers)
	}
	where := container + " > " + quote(names[0])
	if size < 0 || size > w.p.maxArchiveBytes-w.archBytes {
		return w.archiveLimit("%s: members add up to more than %d uncompressed bytes (max_archive_bytes)", where, w.p.maxArchiveBytes)
	}
	w.archBytes += size
	att := Attachment{Filename: names[0], Names: names, Path: where}
	for _, n := range names {
		if h := hiddenChars(n); h != "" {
			w.malformed("%s: name has control or bidirectional characters %s", where, h)
		}
	}
	if encrypted {
		att.Encrypted = true
		w.encrypted("%s: encrypted; its name was checked, its content cannot be", where)
	}
	var data []byte
	if open != nil && !encrypted && size != 0 {
		rc, err := open()
		if err != nil {
			w.uninspectable("%s: does not open: %v", where, err)
		} else {
			data, err = io.ReadAll(io.LimitReader(rc, min(size, sniffLen)))
			if err != nil {
				w.uninspectable("%s: reading: %v", where, err)
			}
			att.Detected = detectTypes(data)
			if f := archiveFormat(att.Detected); f != "" && err == nil {
				rest, rerr := io.ReadAll(io.LimitReader(rc, size-int64(len(data))))
				data = append(data, rest...)
				if rerr != nil {
					w.uninspectable("%s: reading: %v", where, rerr)
				} else {
					att.Archive = f
				}
			}
			rc.Close()
		}
	}
	att.Rules = w.checkAttachment(where, names, "", att.Detected)
	w.rep.Attachments = append(w.rep.Attachments, att)
	if att.Archive != "" {
		return w.archive(where, att.Archive, names, data, depth+1)
	}
	return nil
}

// checkRatio refuses an archive whose members declare more than
// max_archive_ratio times its own size.
func (w *walker) checkRatio(where, format string, declared uint64, size int) error {
	if declared > uint64(size)*uint64(w.p.maxArchiveRatio) {
		return w.archiveLimit("%s: %s members declare %d bytes, %d times the archive's %d (max_archive_ratio is %d)",
			where, format, declared, declared/uint64(max(size, 1)), size, w.p.maxArchiveRatio)
	}
	return nil
}

func (w *walker) archiveLimit(format string, args ...any) error {
	w.rep.ArchiveLimit = fmt.Sprintf(format, args...)
	return errArchiveStop
}

func (w *walker) uninspectable(format string, args ...any) {
	w.rep.Uninspectable = append(w.rep.Uninspectable, fmt.Sprintf(format, args...))
}

func (w *walker) encrypted(format string, args ...any) {
	w.rep.Encrypted = append(w.rep.Encrypted, fmt.Sprintf(format, args...))
}
