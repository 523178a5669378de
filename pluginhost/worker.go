package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// workerEnv, set to "1" in a process's environment, makes RunWorker serve
// as an isolated plugin's worker on fd 3.
const workerEnv = "ELEMTA_PLUGIN_WORKER"

// workerFD is the worker's end of the socketpair (the first of
// exec.Cmd.ExtraFiles).
const workerFD = 3

// RunWorker turns this process into a plugin worker when the host started
// it as one (its environment has ELEMTA_PLUGIN_WORKER=1): it builds the
// instance the host names, serves its calls on fd 3 and exits, never
// returning. Otherwise it returns at once. The elemta binary calls it first
// thing in main; a test binary whose plugins run with isolation =
// "process" calls it first in TestMain (registrytest.Main does), because
// the host re-executes its own executable (/proc/self/exe on Linux, else
// os.Executable) as the worker.
func RunWorker() {
	if os.Getenv(workerEnv) != "1" {
		return
	}
	os.Exit(serveWorker())
}

// Exit codes of a worker.
const (
	workerExitOK       = 0
	workerExitProtocol = 3 // the host broke the protocol or went away mid-frame
	workerExitSetup    = 4 // no socket, no init frame
	workerExitOrphan   = 5 // the host died before the parent-death signal was armed
)

type worker struct {
	k          *conn
	impl       any
	handler    registry.StageHandler
	init       initFrame
	mu         sync.Mutex
	cancels    map[uint64]context.CancelFunc // calls in progress
	waits      map[uint64]chan *frame        // DNS and clock requests to the host
	nextID     uint64
	hostGone   chan struct{} // closed when readLoop ends
	closeAsked bool          // the host asked to close
	readErr    error
	calls      sync.WaitGroup
}

func serveWorker() int {
	// SIGINT from a terminal and SIGTERM to the process group are the
	// server's to handle: a worker ends when the host closes the socket,
	// tells it to, or dies (the parent-death signal).
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	f := os.NewFile(workerFD, "plugin-host")
	c, err := net.FileConn(f) // a dup: fd 3 stays open for the life of the worker
	if err != nil {
		fmt.Fprintf(os.Stderr, "elemta plugin worker: fd %d is not the host's socket: %v\n", workerFD, err)
		return workerExitSetup
	}
	registerWireTypes()
	w := &worker{k: newConn(c), cancels: map[uint64]context.CancelFunc{}, waits: map[uint64]chan *frame{}, hostGone: make(chan struct{})}
	f0, err := w.k.recv()
	if err != nil || f0.Kind != kindInit || f0.Init == nil {
		fmt.Fprintf(os.Stderr, "elemta plugin worker: no init frame: %v\n", err)
		return workerExitSetup
	}
	w.init = *f0.Init
	if os.Getppid() != w.init.ParentPID {
		return workerExitOrphan // the host died before Pdeathsig could fire for it
	}
	ready := &frame{Kind: kindReady}
	if err := w.build(); err != nil {
		ready.Err = err.Error()
	}
	if err := w.k.send(ready); err != nil || ready.Err != "" {
		return workerExitSetup
	}
	return w.serve()
}

// build sets the memory limits, then builds, validates and starts the
// plugin from the host's config document, as the Manager does in-process.
func (w *worker) build() error {
	if err := setMemoryLimit(w.init.MemoryLimit); err != nil {
		return fmt.Errorf("memory limit: %w", err)
	}
	cfg, err := ParseConfig(w.init.ConfigFile, w.init.ConfigData)
	if err != nil {
		return err
	}
	settings, err := cfg.Settings(w.init.Instance)
	if err != nil {
		return err
	}
	mod, ok := catalog.Global().Lookup(settings.Type)
	if !ok {
		return fmt.Errorf("plugin %s is not compiled into the worker", settings.Type)
	}
	host := registry.Host{
		Instance:   w.init.Instance,
		Logger:     slog.New(&remoteLog{w: w, level: slog.Level(w.init.LogLevel)}),
		Resolver:   remoteResolver{w},
		Clock:      registry.SystemClock{},
		Hostname:   w.init.Hostname,
		AuthservID: w.init.AuthservID,
		DataDir:    w.init.DataDir,
	}
	if w.init.HostClock {
		host.Clock = remoteClock{w}
	}
	go w.readLoop() // DNS and clock answers arrive while the plugin starts
	impl, err := mod.Build(settings.Value, host)
	if err != nil {
		return err
	}
	w.impl = impl
	w.handler = handlerOf(impl, infoOf(mod).Types)
	if v, ok := impl.(registry.Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
	}
	if s, ok := impl.(registry.Starter); ok {
		if err := s.Start(context.Background()); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	return nil
}

// setMemoryLimit sets Go's soft limit to limit and the kernel's address
// space limit (RLIMIT_AS) to what the process has mapped now plus limit:
// a Go process reserves about a gigabyte of address space before it
// allocates anything, so a bare limit would stop it from starting.
func setMemoryLimit(limit int64) error {
	if limit <= 0 {
		return nil
	}
	debug.SetMemoryLimit(limit)
	vm, err := vmSize()
	if err != nil {
		return err
	}
	as := uint64(vm + limit)
	return syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as})
}

// vmSize returns the process's mapped address space (VmSize) in bytes.
func vmSize() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/status: VmSize %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("/proc/self/status has no VmSize")
}

// readLoop reads the host's frames until it closes the socket, asks the
// worker to close, or breaks the protocol, starting a goroutine per call.
func (w *worker) readLoop() {
	defer close(w.hostGone)
	for {
		f, err := w.k.recv()
		if err != nil {
			w.fail(err)
			return
		}
		switch f.Kind {
		case kindCall:
			if f.Call == nil {
				w.fail(fmt.Errorf("%w: call frame without a call", errConn))
				return
			}
			w.startCall(f.ID, f.Call)
		case kindCancel:
			w.mu.Lock()
			if c := w.cancels[f.ID]; c != nil {
				c()
			}
			w.mu.Unlock()
		case kindDNS, kindClock:
			w.mu.Lock()
			ch := w.waits[f.ID]
			delete(w.waits, f.ID)
			w.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case kindClose:
			w.mu.Lock()
			w.closeAsked = true
			w.mu.Unlock()
			return
		default:
			w.fail(fmt.Errorf("%w: unexpected frame kind %d from the host", errConn, f.Kind))
			return
		}
	}
}

func (w *worker) fail(err error) {
	w.mu.Lock()
	w.readErr = err
	w.mu.Unlock()
}

// serve waits until the host asks the worker to close or goes away, then
// closes the plugin.
func (w *worker) serve() int {
	code := workerExitOK
	<-w.hostGone
	w.mu.Lock()
	closeAsked := w.closeAsked
	if err := w.readErr; err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(os.Stderr, "elemta plugin worker: %v\n", err)
		code = workerExitProtocol
	}
	for _, c := range w.cancels {
		c()
	}
	w.mu.Unlock()
	w.calls.Wait()
	reply := &frame{Kind: kindClosed}
	if c, ok := w.impl.(registry.Closer); ok {
		if err := safeClose(c); err != nil {
			reply.Err = err.Error()
		}
	}
	if closeAsked {
		_ = w.k.send(reply)
	}
	return code
}

func (w *worker) startCall(id uint64, cf *callFrame) {
	ctx, cancel := context.WithCancel(context.Background())
	if !cf.Deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.Background(), cf.Deadline)
	}
	w.mu.Lock()
	w.cancels[id] = cancel
	w.mu.Unlock()
	w.calls.Add(1)
	go func() {
		defer w.calls.Done()
		reply := w.dispatch(ctx, cf)
		cancel()
		w.mu.Lock()
		delete(w.cancels, id)
		w.mu.Unlock()
		if err := w.k.send(&frame{ID: id, Kind: kindReply, Reply: reply}); err != nil {
			// The stream is broken: nothing more can be said to the host.
			fmt.Fprintf(os.Stderr, "elemta plugin worker: %v\n", err)
			os.Exit(workerExitProtocol)
		}
	}()
}

// dispatch runs one call on the plugin, turning a panic into a reply that
// says so.
func (w *worker) dispatch(ctx context.Context, cf *callFrame) (reply *replyFrame) {
	reply = &replyFrame{}
	defer func() {
		if v := recover(); v != nil {
			*reply = replyFrame{Panicked: true, Panic: fmt.Sprint(v), Stack: string(debug.Stack())}
		}
	}()
	var msg *registry.Message
	var pc *registry.ProcessingContext
	if cf.Message != nil {
		m, err := registry.ParseMessage(cf.Message.Raw, cf.Message.Envelope)
		if err != nil {
			reply.Err = fmt.Sprintf("message: %v", err)
			return reply
		}
		for _, f := range cf.Message.Added {
			m.AddHeader(f.Name, f.Value)
		}
		msg = m
	}
	if cf.PC != nil && msg != nil {
		session := cf.PC.Session
		pc = registry.NewProcessingContext(msg, &session)
		pc.Phase = cf.PC.Phase
		for _, r := range cf.PC.Results {
			catalog.RecordResult(pc, r.result(), r.Order)
		}
		ctx = registry.WithProcessingContext(ctx, pc)
	}
	added := 0
	if msg != nil {
		added = len(msg.AddedHeaders())
	}
	var err error
	switch cf.Method {
	case methodStage:
		if w.handler == nil || pc == nil {
			err = errors.New("the plugin runs in no stage")
			break
		}
		var res *registry.Result
		res, err = w.handler.HandleStage(ctx, cf.Stage, pc)
		switch {
		case err != nil:
		case res == nil:
			err = errors.New("returned no result and no error")
		case !crossable(res.Data):
			err = fmt.Errorf("result Data of type %T cannot cross to the host process: declare it in the plugin's Module.Produces", res.Data)
		default:
			wr := wireOf(res, 0)
			reply.Result = &wr
		}
	case methodEndSession:
		if e, ok := w.impl.(registry.SessionEnder); ok && pc != nil {
			err = e.EndSession(ctx, pc)
		}
	case methodHealth:
		if h, ok := w.impl.(registry.HealthChecker); ok {
			err = h.HealthCheck(ctx)
		}
	case methodScan:
		switch p := w.impl.(type) {
		case registry.AntivirusPlugin:
			reply.Value, err = p.ScanMessage(ctx, msg)
		case registry.AntispamPlugin:
			reply.Value, err = p.ScanMessage(ctx, msg)
		default:
			err = errors.New("the plugin has no ScanMessage")
		}
	case methodScore:
		p, ok := w.impl.(registry.AntispamPlugin)
		if !ok {
			err = errors.New("the plugin has no GetScore")
			break
		}
		reply.Score, err = p.GetScore(ctx, msg)
	case methodInfo:
		if p, ok := w.impl.(registry.AntivirusPlugin); ok {
			reply.Value = p.GetInfo()
		}
	case methodVerifyDKIM:
		reply.Value, err = call1(w.impl, func(p registry.DKIMPlugin) (any, error) { return p.VerifySignature(ctx, msg) })
	case methodSignDKIM:
		_, err = call1(w.impl, func(p registry.DKIMPlugin) (any, error) { return nil, p.SignMessage(ctx, msg, cf.Domain) })
	case methodCheckSPF:
		reply.Value, err = call1(w.impl, func(p registry.SPFPlugin) (any, error) { return p.CheckSPF(ctx, cf.IP, cf.Domain) })
	case methodCheckDMARC:
		reply.Value, err = call1(w.impl, func(p registry.DMARCPlugin) (any, error) { return p.CheckDMARC(ctx, msg) })
	case methodVerifyChain:
		reply.Value, err = call1(w.impl, func(p registry.ARCPlugin) (any, error) { return p.VerifyChain(ctx, msg) })
	case methodSeal:
		_, err = call1(w.impl, func(p registry.ARCPlugin) (any, error) { return nil, p.SealMessage(ctx, msg) })
	default:
		err = fmt.Errorf("unknown method %q", cf.Method)
	}
	if err != nil {
		return &replyFrame{Err: err.Error()}
	}
	if !crossable(reply.Value) {
		return &replyFrame{Err: fmt.Sprintf("%s returned a %T, which cannot cross to the host process", cf.Method, reply.Value)}
	}
	if msg != nil {
		reply.Added = msg.AddedHeaders()[added:]
	}
	return reply
}

// call1 calls fn with the plugin as a T, or fails when it is not one.
func call1[T any](impl any, fn func(T) (any, error)) (any, error) {
	p, ok := impl.(T)
	if !ok {
		var zero *T
		return nil, fmt.Errorf("the plugin is not a %T", zero)
	}
	v, err := fn(p)
	if isNilValue(v) {
		v = nil
	}
	return v, err
}

// request sends the host a DNS or clock frame and waits for its answer.
func (w *worker) request(ctx context.Context, f *frame) (*frame, error) {
	ch := make(chan *frame, 1)
	w.mu.Lock()
	w.nextID++
	f.ID = w.nextID
	w.waits[f.ID] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.waits, f.ID)
		w.mu.Unlock()
	}()
	if err := w.k.send(f); err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-w.hostGone:
		return nil, errors.New("plugin host went away")
	}
}

func wireOf(r *registry.Result, order int) wireResult {
	wr := wireResult{Verdict: r.Verdict, Score: r.Score, AddHeaders: r.AddHeaders, RemoveHeaders: r.RemoveHeaders,
		Details: r.Details, Plugin: r.Plugin, Stage: r.Stage, Duration: r.Duration, TimedOut: r.TimedOut, Panicked: r.Panicked, Order: order}
	if crossable(r.Data) {
		wr.Data = r.Data
	}
	if r.Err != nil {
		wr.Err = r.Err.Error()
	}
	return wr
}

func (wr wireResult) result() *registry.Result {
	r := &registry.Result{Verdict: wr.Verdict, Score: wr.Score, AddHeaders: wr.AddHeaders, RemoveHeaders: wr.RemoveHeaders,
		Data: wr.Data, Details: wr.Details, Plugin: wr.Plugin, Stage: wr.Stage, Duration: wr.Duration, TimedOut: wr.TimedOut, Panicked: wr.Panicked}
	if wr.Err != "" {
		r.Err = errors.New(wr.Err)
	}
	return r
}

// remoteClock asks the host for the time: a test's clock holds in the worker too.
type remoteClock struct{ w *worker }

func (c remoteClock) Now() time.Time {
	a, err := c.w.request(context.Background(), &frame{Kind: kindClock})
	if err != nil || a.Clock == nil {
		return time.Now()
	}
	return a.Clock.Now
}
