package canon

import "bytes"

// StripB returns the field with the value of its b= tag removed (RFC 6376
// §3.7, and the ARC signatures of RFC 8617: the tag stays, its value goes; white space and folding around it
// stay as they were).
func StripB(raw []byte) []byte {
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	for pos := colon + 1; pos < len(raw); {
		end := bytes.IndexByte(raw[pos:], ';')
		if end < 0 {
			end = len(raw)
		} else {
			end += pos
		}
		part := raw[pos:end]
		if eq := bytes.IndexByte(part, '='); eq >= 0 && string(bytes.Trim(part[:eq], " \t\r\n")) == "b" {
			out := append([]byte{}, raw[:pos+eq+1]...)
			rest := raw[end:]
			if end == len(raw) { // b= was last: keep the line end
				trail := len(part) - len(bytes.TrimRight(part, "\r\n"))
				rest = part[len(part)-trail:]
			}
			return append(out, rest...)
		}
		pos = end + 1
	}
	return raw
}
