package registry

import "context"

// PluginType names the kind of work a plugin does. A plugin may declare
// several; each declared type obliges it to implement that type's
// capability interface, checked when it registers.
type PluginType string

// The plugin types of Elemta's original plugin module.
const (
	PluginTypeAntivirus PluginType = "antivirus"
	PluginTypeAntispam  PluginType = "antispam"
	PluginTypeDKIM      PluginType = "dkim"
	PluginTypeSPF       PluginType = "spf"
	PluginTypeDMARC     PluginType = "dmarc"
	PluginTypeARC       PluginType = "arc"
	PluginTypeGreylist  PluginType = "greylist"
	PluginTypeRateLimit PluginType = "ratelimit"
	PluginTypeFilter    PluginType = "filter"
	PluginTypeCustom    PluginType = "custom"
)

// PluginInfo describes a plugin, as the original module's GetInfo did.
type PluginInfo struct {
	Name        string
	Version     string
	Type        PluginType
	Description string
	Author      string
}

// Status is the outcome of a content scan.
type Status string

// Scan outcomes.
const (
	StatusClean    Status = "clean"
	StatusInfected Status = "infected"
	StatusError    Status = "error"
)

// ScanResult is what antivirus and antispam plugins report.
type ScanResult struct {
	Status  Status
	Details string
	// Threats names what was found (virus names, spam symbols).
	Threats []string
	// Score is the spam score; zero for antivirus scanners.
	Score float64
}

// AntivirusPlugin scans a message for malware.
type AntivirusPlugin interface {
	ScanMessage(ctx context.Context, message *Message) (*ScanResult, error)
	GetInfo() *PluginInfo
}

// AntispamPlugin classifies and scores a message.
type AntispamPlugin interface {
	ScanMessage(ctx context.Context, message *Message) (*ScanResult, error)
	GetScore(ctx context.Context, message *Message) (float64, error)
}

// DKIMPlugin verifies and signs DKIM signatures (RFC 6376).
type DKIMPlugin interface {
	VerifySignature(ctx context.Context, message *Message) (*DKIMResult, error)
	// SignMessage signs message for domain and records the DKIM-Signature
	// field with message.AddHeader.
	SignMessage(ctx context.Context, message *Message, domain string) error
}

// SPFPlugin checks whether ip may send mail for domain (RFC 7208).
type SPFPlugin interface {
	CheckSPF(ctx context.Context, ip string, domain string) (*SPFResult, error)
}

// DMARCPlugin evaluates the DMARC policy of the message's From domain (RFC 7489).
type DMARCPlugin interface {
	CheckDMARC(ctx context.Context, message *Message) (*DMARCResult, error)
}

// ARCPlugin verifies and extends Authenticated Received Chains (RFC 8617).
type ARCPlugin interface {
	VerifyChain(ctx context.Context, message *Message) (*ARCResult, error)
	// SealMessage adds an ARC set with message.AddHeader.
	SealMessage(ctx context.Context, message *Message) error
}

// AuthResult is an authentication method's result keyword as used in
// Authentication-Results (RFC 8601): "pass", "fail", "none", ...
type AuthResult string

// Authentication results shared by SPF, DKIM, DMARC and ARC.
const (
	AuthNone      AuthResult = "none"
	AuthPass      AuthResult = "pass"
	AuthFail      AuthResult = "fail"
	AuthSoftFail  AuthResult = "softfail"
	AuthNeutral   AuthResult = "neutral"
	AuthPolicy    AuthResult = "policy"
	AuthTempError AuthResult = "temperror"
	AuthPermError AuthResult = "permerror"
)

// DKIMSignatureResult is the outcome of verifying one DKIM-Signature field.
type DKIMSignatureResult struct {
	Domain    string
	Selector  string
	Identity  string // i= (AUID)
	Algorithm string
	Result    AuthResult
	Reason    string
}

// DKIMResult holds one entry per DKIM-Signature field in the message.
type DKIMResult struct {
	Signatures []DKIMSignatureResult
}

// SPFResult is the outcome of an SPF check of one identity.
type SPFResult struct {
	Result      AuthResult
	Identity    string // "mailfrom" or "helo"
	Domain      string
	IP          string
	Explanation string
	// HELO holds the HELO identity's result when both were checked.
	HELO *SPFResult
}

// DMARCResult is the outcome of DMARC evaluation.
type DMARCResult struct {
	Result AuthResult
	// Domain is the RFC5322.From domain; PolicyDomain where the record was found.
	Domain       string
	PolicyDomain string
	// Policy is the requested disposition: "none", "quarantine" or "reject".
	Policy      string
	SPFAligned  bool
	DKIMAligned bool
	Reason      string
}

// ARCResult is the outcome of ARC chain validation.
type ARCResult struct {
	Result AuthResult // none, pass or fail; temperror when a key could not be fetched
	Reason string
	// Instances is the number of ARC sets; OldestPass the lowest instance
	// whose ARC-Message-Signature still validates (header.oldest-pass).
	Instances  int
	OldestPass int
}
