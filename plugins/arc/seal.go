package arc

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/elemta/elemta/pkg/canon"
	"github.com/elemta/elemta/pkg/dkimkey"
	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

// sealer holds what an ARC set is made with.
type sealer struct {
	domain, selector string
	key              *dkimkey.Key
	headers          []string // AMS h= candidates, lowercase
}

// seal returns the next ARC set for msg, whose existing chain is sets and
// validates as cv ("none", "pass" or "fail"): ARC-Seal,
// ARC-Message-Signature and ARC-Authentication-Results, in the order they
// are to be prepended. authres is our Authentication-Results value
// ("authserv-id; method=result ..."). Tags are written in alphabetical
// order, as the ValiMail suite's signers do.
func (s *sealer) seal(msg *registry.Message, sets []*arcSet, cv string, authres string, now time.Time) ([]registry.Field, error) {
	n := len(sets) + 1
	if n > MaxInstances {
		return nil, fmt.Errorf("seal: the chain already has %d sets", len(sets))
	}
	eol := "\r\n"
	if len(msg.Header) > 0 && !strings.HasSuffix(string(msg.Header[0].Raw), "\r\n") {
		eol = "\n"
	}
	aarValue := headerfold.Value(hdrAAR, fmt.Sprintf("i=%d; %s", n, strings.TrimSpace(authres)), eol)
	aarRaw := []byte(hdrAAR + ": " + aarValue + "\r\n")

	// ARC-Message-Signature
	var h []string
	picked := map[string]int{}
	for _, name := range s.headers {
		for {
			if _, ok := pick(msg.Header, name, picked); !ok {
				break
			}
			h = append(h, name)
		}
	}
	algo := s.key.Algorithm
	bh := base64.StdEncoding.EncodeToString(dkimkey.SHA256(canon.BodyBytes(canon.Relaxed, msg.Body())))
	t := now.Unix()
	amsTags := func(b string) string {
		return fmt.Sprintf("a=%s; b=%s; bh=%s; c=relaxed/relaxed; d=%s; h=%s; i=%d; s=%s; t=%d",
			algo, b, bh, s.domain, strings.Join(h, ":"), n, s.selector, t)
	}
	var data []byte
	picked = map[string]int{}
	for _, name := range h {
		f, _ := pick(msg.Header, name, picked)
		data = append(data, canon.Header(canon.Relaxed, f.Raw)...)
	}
	amsNoB := canon.Header(canon.Relaxed, []byte(hdrAMS+": "+amsTags("")))
	data = append(data, strings.TrimSuffix(string(amsNoB), "\r\n")...)
	amsSig, err := s.key.Sign(dkimkey.SHA256(data))
	if err != nil {
		return nil, fmt.Errorf("sign ARC-Message-Signature: %w", err)
	}
	amsValue := amsTags(fold(base64.StdEncoding.EncodeToString(amsSig), eol))
	amsRaw := []byte(hdrAMS + ": " + amsValue + "\r\n")

	// ARC-Seal
	sealTags := func(b string) string {
		return fmt.Sprintf("a=%s; b=%s; cv=%s; d=%s; i=%d; s=%s; t=%d", algo, b, cv, s.domain, n, s.selector, t)
	}
	covered := sets
	if cv == "fail" {
		covered = nil // RFC 8617 §5.1.2: a cv=fail seal covers only its own set
	}
	sealSig, err := s.key.Sign(dkimkey.SHA256(sealData(covered, aarRaw, amsRaw, []byte(hdrSeal+": "+sealTags("")))))
	if err != nil {
		return nil, fmt.Errorf("sign ARC-Seal: %w", err)
	}
	sealValue := sealTags(fold(base64.StdEncoding.EncodeToString(sealSig), eol))
	// Folding the signed fields now only moves white space: both are
	// signed with relaxed canonicalization, which unfolds.
	return []registry.Field{
		{Name: hdrSeal, Value: headerfold.Value(hdrSeal, sealValue, eol)},
		{Name: hdrAMS, Value: headerfold.Value(hdrAMS, amsValue, eol)},
		{Name: hdrAAR, Value: aarValue},
	}, nil
}

// fold breaks a b= value into lines of 72 characters (the first one after
// "b="), as the ValiMail reference signer does; the folding white space is
// ignored in b= (RFC 6376 §3.5) but is part of what a later seal signs.
func fold(b64, eol string) string {
	var sb strings.Builder
	for width := 70; len(b64) > width; width = 72 {
		sb.WriteString(b64[:width] + eol + " ")
		b64 = b64[width:]
	}
	sb.WriteString(b64)
	return sb.String()
}
