package pluginhost

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// The protocol between the host and an isolated instance's worker process,
// over a Unix socketpair (the worker's fd 3). Each direction is a stream of
// frames: a 4-byte big-endian length, then that many bytes of one gob
// value of type frame. One gob encoder per direction lives as long as the
// connection, so a type's description crosses once and a call costs only
// its values. The length bounds what a peer can make the other allocate
// (maxFrame); a frame that does not decode, or any other protocol error,
// ends the connection and the host kills the worker.
//
// Why gob: it is in the standard library (no dependency, no generated
// code, no schema files to keep in step with Go types), it encodes the
// registry's own types — Result, Verdict, Field, the *SPFResult and
// friends in Data — as they are, interface values included once their
// type is registered, and both ends are the same binary, so the one thing
// gob lacks against protobuf (a stable schema between versions) is never
// needed: a worker is always the host's own executable.
//
// Data crosses as gob interface values: every result type a compiled-in
// plugin declares in Module.Produces or Consumes, and the registry's
// result types, are registered with gob under their Go import path in
// both processes (registerWireTypes). A plugin whose Data is of another
// type gets an error for that call, naming the type and Module.Produces.

const maxFrame = 256 << 20 // larger than any message Elemta accepts, plus its results

// frame is everything that crosses, one kind per frame.
type frame struct {
	ID   uint64
	Kind frameKind

	Init  *initFrame
	Call  *callFrame
	Reply *replyFrame
	Log   *logFrame
	DNS   *dnsFrame
	Clock *clockFrame
	Err   string
}

type frameKind uint8

const (
	kindInit   frameKind = iota + 1 // host → worker: build the plugin
	kindReady                       // worker → host: built and started (Err on failure)
	kindCall                        // host → worker: call a method
	kindReply                       // worker → host: its outcome
	kindCancel                      // host → worker: the call's context ended
	kindClose                       // host → worker: close the plugin and exit
	kindClosed                      // worker → host: closed (Err from Close)
	kindLog                         // worker → host: a log record
	kindDNS                         // worker → host: a lookup; host → worker: its answer
	kindClock                       // worker → host: what time is it; host → worker: the time
)

// initFrame tells a worker what to build.
type initFrame struct {
	ConfigFile string
	ConfigData []byte
	Instance   string
	Hostname   string
	AuthservID string
	DataDir    string
	// HostClock: ask the host for the time (a test's clock) instead of
	// reading the system's.
	HostClock   bool
	MemoryLimit int64
	ParentPID   int
	// LogLevel is the lowest level the host's logger takes.
	LogLevel int
}

// The methods a callFrame names.
const (
	methodStage       = "HandleStage"
	methodEndSession  = "EndSession"
	methodHealth      = "HealthCheck"
	methodScan        = "ScanMessage"
	methodScore       = "GetScore"
	methodInfo        = "GetInfo"
	methodVerifyDKIM  = "VerifySignature"
	methodSignDKIM    = "SignMessage"
	methodCheckSPF    = "CheckSPF"
	methodCheckDMARC  = "CheckDMARC"
	methodVerifyChain = "VerifyChain"
	methodSeal        = "SealMessage"
)

type callFrame struct {
	Method   string
	Deadline time.Time // zero: none
	Stage    registry.Stage
	// Message and processing context; nil when the method takes none.
	Message *wireMessage
	PC      *wirePC
	// Arguments of CheckSPF (IP, Domain) and SignMessage (Domain).
	IP, Domain string
}

type wireMessage struct {
	Raw      []byte
	Envelope registry.Envelope
	Added    []registry.Field // recorded with AddHeader before the call
}

type wirePC struct {
	Session registry.Session
	Phase   registry.Phase
	Results []wireResult
}

// wireResult is a registry.Result as it crosses: the error as its text.
type wireResult struct {
	Verdict       registry.Verdict
	Score         float64
	AddHeaders    []registry.Field
	RemoveHeaders []registry.Removal
	Data          any
	Details       string
	Plugin        string
	Stage         registry.Stage
	Duration      time.Duration
	Err           string
	TimedOut      bool
	Panicked      bool
	Order         int
}

type replyFrame struct {
	Result *wireResult // HandleStage
	Value  any         // what a capability method returns (*ScanResult, *DKIMResult, ...)
	Score  float64     // GetScore
	Added  []registry.Field
	Err    string
	// Panic is the value the plugin panicked with, Stack the worker's stack.
	Panic, Stack string
	Panicked     bool
}

type logFrame struct {
	Time  time.Time
	Level int
	Msg   string
	Attrs []logAttr
}

type logAttr struct{ Key, Value string }

type dnsFrame struct {
	Method   string // TXT, MX, IP, PTR
	Name     string
	Deadline time.Time
	TXT      []string
	MX       []*net.MX
	IPs      []net.IPAddr
	Names    []string
	Err      *net.DNSError
	Canceled bool // the lookup's context was cancelled, not timed out
}

type clockFrame struct{ Now time.Time }

var (
	wireTypesOnce sync.Once
	wireTypes     = map[reflect.Type]bool{}
)

// registerWireTypes registers with gob every type a Result's Data or a
// capability method's result may hold. Both processes run the same binary
// with the same plugins, so they register the same types under the same
// names.
func registerWireTypes() {
	wireTypesOnce.Do(func() {
		for _, v := range []any{(*registry.ScanResult)(nil), (*registry.DKIMResult)(nil), (*registry.SPFResult)(nil),
			(*registry.DMARCResult)(nil), (*registry.ARCResult)(nil), (*registry.PluginInfo)(nil)} {
			registerWireType(reflect.TypeOf(v))
		}
		cat := catalog.Global()
		for _, n := range cat.Names() {
			e, _ := cat.Lookup(n)
			for _, t := range append(append([]reflect.Type(nil), e.Produces...), e.Consumes...) {
				registerWireType(t)
			}
		}
	})
}

func registerWireType(t reflect.Type) {
	if t.Kind() == reflect.Interface || wireTypes[t] {
		return
	}
	name := t.String()
	if b := t; b.Kind() == reflect.Pointer {
		name = "*" + b.Elem().PkgPath() + "." + b.Elem().Name()
	} else if t.PkgPath() != "" {
		name = t.PkgPath() + "." + t.Name()
	}
	func() {
		defer func() { _ = recover() }() // already registered by gob under another name: usable as is
		gob.RegisterName(name, reflect.Zero(t).Interface())
	}()
	wireTypes[t] = true
}

// crossable reports whether v may travel in an interface field.
func crossable(v any) bool { return v == nil || wireTypes[reflect.TypeOf(v)] }

// errConn marks an error of the connection itself: the peer is gone or
// broke the protocol.
var errConn = errors.New("plugin worker connection")

// conn is one end of the socketpair: frames out through one gob encoder,
// frames in through one gob decoder.
type conn struct {
	c   net.Conn
	wmu sync.Mutex
	buf *bytes.Buffer // what enc writes to (through out)
	out bufWriter
	enc *gob.Encoder
	dec *gob.Decoder
	fr  *frameReader
}

func newConn(c net.Conn) *conn {
	k := &conn{c: c, fr: &frameReader{r: bufio.NewReaderSize(c, 64<<10)}}
	k.buf = new(bytes.Buffer)
	k.out.b = &k.buf
	k.enc = gob.NewEncoder(&k.out)
	k.dec = gob.NewDecoder(k.fr)
	return k
}

// bufWriter writes to the buffer *b points to, which send replaces after a
// large frame without changing the encoder (a new encoder would resend
// type descriptions, which gob's decoder refuses as duplicates).
type bufWriter struct{ b **bytes.Buffer }

func (w *bufWriter) Write(p []byte) (int, error) { return (*w.b).Write(p) }

// send writes one frame. A failure leaves the stream unusable (the
// encoder may have sent a type description the peer never got), so the
// caller ends the connection.
func (k *conn) send(f *frame) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	k.buf.Reset()
	k.buf.Write([]byte{0, 0, 0, 0})
	if err := k.enc.Encode(f); err != nil {
		return fmt.Errorf("%w: encode: %w", errConn, err)
	}
	n := k.buf.Len() - 4
	if n > maxFrame {
		return fmt.Errorf("%w: frame of %d bytes exceeds %d", errConn, n, maxFrame)
	}
	b := k.buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(n))
	if _, err := k.c.Write(b); err != nil {
		return fmt.Errorf("%w: write: %w", errConn, err)
	}
	if k.buf.Cap() > 1<<20 {
		k.buf = new(bytes.Buffer) // do not keep a large message's buffer
	}
	return nil
}

// recv reads one frame.
func (k *conn) recv() (*frame, error) {
	if err := k.fr.next(); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF // between frames: the peer closed
		}
		return nil, fmt.Errorf("%w: %w", errConn, err)
	}
	var f frame
	if err := k.dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", errConn, err)
	}
	if !k.fr.clean() {
		return nil, fmt.Errorf("%w: %d bytes after a value inside a frame", errConn, k.fr.left)
	}
	return &f, nil
}

// frameReader hands the gob decoder the bytes of one frame (recv reads
// each frame's length first), refusing a length above maxFrame and a gob
// value that runs past its frame's end: garbage fails at once instead of
// waiting for bytes that belong to the next frame. It is an
// io.ByteReader, so the decoder reads no further ahead than it needs.
type frameReader struct {
	r    *bufio.Reader
	left int // bytes of the current frame not yet read
}

func (fr *frameReader) clean() bool { return fr.left == 0 }

func (fr *frameReader) next() error {
	var hdr [4]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return fmt.Errorf("frame length %d out of range (1..%d)", n, maxFrame)
	}
	fr.left = int(n)
	return nil
}

var errPastFrame = errors.New("gob value runs past the end of its frame")

func (fr *frameReader) Read(p []byte) (int, error) {
	if fr.left == 0 {
		return 0, errPastFrame
	}
	n, err := fr.r.Read(p[:min(len(p), fr.left)])
	fr.left -= n
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (fr *frameReader) ReadByte() (byte, error) {
	if fr.left == 0 {
		return 0, errPastFrame
	}
	b, err := fr.r.ReadByte()
	if err == nil {
		fr.left--
	} else if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}
