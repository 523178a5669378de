package contentfilter

import (
	"bytes"
	"mime"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// sniffLen is how many leading bytes of a part or archive member type
// detection reads: mimetype's default read limit, plus what the ISO 9660
// check needs (its signature is at 32769).
const sniffLen = 36 << 10

// Types the detector adds to what mimetype finds.
const (
	typeScript   = "text/x-script"                        // any file that starts with "#!"
	typeVBA      = "application/vnd.ms-office.vbaproject" // OLE file holding a VBA project (macros)
	typeISO      = "application/x-iso9660-image"
	typeDiskImg  = "application/x-raw-disk-image" // MBR, FAT or NTFS boot sector
	typeVHD      = "application/x-vhd"
	typeVHDX     = "application/x-vhdx"
	typeOctet    = "application/octet-stream"
	typeTextMain = "text/plain"
)

// detectTypes returns the media types the bytes are, most specific first,
// with mimetype's parents (so "application/x-elf" comes with
// "application/x-sharedlib", "application/zip" with an OOXML document).
// application/octet-stream and text/plain, which say nothing, are left out;
// an empty result means nothing was recognised.
func detectTypes(b []byte) []string {
	if len(b) > sniffLen {
		b = b[:sniffLen]
	}
	var out []string
	add := func(t string) {
		if t == "" || t == typeOctet || t == typeTextMain {
			return
		}
		for _, have := range out {
			if have == t {
				return
			}
		}
		out = append(out, t)
	}
	if len(b) == 0 {
		return nil
	}
	for m := mimetype.Detect(b); m != nil; m = m.Parent() {
		t, _, err := mime.ParseMediaType(m.String())
		if err != nil {
			t = strings.ToLower(m.String())
		}
		add(t)
	}
	if bytes.HasPrefix(b, []byte("#!")) {
		add(typeScript)
	}
	if bytes.HasPrefix(b, oleMagic) && bytes.Contains(b, utf16le("_VBA_PROJECT")) {
		add(typeVBA)
	}
	switch {
	case len(b) >= 32774 && string(b[32769:32774]) == "CD001":
		add(typeISO)
	case bytes.HasPrefix(b, []byte("conectix")):
		add(typeVHD)
	case bytes.HasPrefix(b, []byte("vhdxfile")):
		add(typeVHDX)
	case isBootSector(b):
		add(typeDiskImg)
	}
	return out
}

var oleMagic = []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")

// isBootSector reports a FAT or NTFS volume boot record, or an MBR whose
// partition table names a partition: what a .img attachment holds.
func isBootSector(b []byte) bool {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return false
	}
	switch {
	case string(b[3:11]) == "NTFS    ", string(b[3:8]) == "EXFAT":
		return true
	case string(b[54:57]) == "FAT", string(b[82:87]) == "FAT32":
		return true
	}
	for i := 0; i < 4; i++ { // MBR: a partition entry with a type and a size
		e := b[446+16*i : 446+16*(i+1)]
		if (e[0] == 0 || e[0] == 0x80) && e[4] != 0 && (e[12]|e[13]|e[14]|e[15]) != 0 {
			return true
		}
	}
	return false
}

func utf16le(s string) []byte {
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, s[i], 0)
	}
	return out
}

// archiveFormat names the container format of b that the filter opens or
// knows it cannot open ("" when b is none). Formats are recognised from
// the bytes only: a declared type or a file name never decides.
func archiveFormat(types []string) string {
	for _, t := range types {
		switch t {
		case "application/zip":
			return "zip"
		case "application/x-tar":
			return "tar"
		case "application/gzip":
			return "gzip"
		case "application/x-bzip2":
			return "bzip2"
		case typeISO:
			return "iso"
		case "application/vnd.rar", "application/x-rar-compressed":
			return "rar"
		case "application/x-7z-compressed":
			return "7z"
		case "application/x-xz":
			return "xz"
		case "application/zstd":
			return "zstd"
		case "application/vnd.ms-cab-compressed":
			return "cab"
		case "application/x-lzip":
			return "lzip"
		case "application/x-archive", "application/x-unix-archive":
			return "ar"
		case "application/x-cpio":
			return "cpio"
		case typeDiskImg:
			return "disk image"
		case typeVHD:
			return "vhd"
		case typeVHDX:
			return "vhdx"
		}
	}
	return ""
}
