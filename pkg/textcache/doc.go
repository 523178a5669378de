// Package textcache remembers what a parse function made of a text: a DNS
// record's text (a DKIM key, a DMARC policy, an SPF record) is parsed once
// and its parsed form, or its error, reused while the same text comes back.
// The text is the whole key, so nothing goes stale: a changed record is a
// different text and is parsed afresh; how long a record lives is the
// resolver's cache's business, not this one's.
//
//	records := textcache.New(1000, 4096, parseRecord)
//	rec, err := records.Get(txt)
//
// A Cache holds at most max entries (when full, one is forgotten to make
// room, whichever the map yields: record texts are few and hot, so no
// recency bookkeeping is paid on every hit) and never keeps a text longer
// than maxLen bytes (such a text is parsed every time, so a hostile zone
// cannot fill memory with huge records). The values are shared between
// callers and must not be modified. A Cache is safe for concurrent use.
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version. It imports
// nothing from internal/.
package textcache
