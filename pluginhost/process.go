package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elemta/elemta/registry"
)

// cancelGrace is how long a worker has, after a call's context ended, to
// answer it before the host kills the worker as hung.
const cancelGrace = time.Second

// closeGrace is how long a worker has to close its plugin and exit when
// the host shuts it down before it is killed.
const closeGrace = 5 * time.Second

// socketBuffer is the send and receive buffer asked for each end of the
// socketpair.
const socketBuffer = 4 << 20

// stderrTail is how much of a worker's stderr the host keeps, to log when
// it dies (a Go fatal error's first lines say why).
const stderrTail = 4 << 10

// process is one worker process seen from the host.
type process struct {
	cmd  *exec.Cmd
	k    *conn
	pid  int
	host registry.Host
	log  *slog.Logger

	mu       sync.Mutex
	nextID   uint64
	pending  map[uint64]*pendingCall
	inflight int
	served   int64
	deadErr  error // why the connection ended
	ready    chan error
	closed   chan string // the Close error the worker reported

	dead     chan struct{} // closed when the connection is gone and the process reaped
	readDone chan struct{}
	stderr   *tail
	services context.Context // lives as long as the connection: DNS answers
	stop     context.CancelFunc
	started  time.Time
}

type pendingCall struct {
	reply chan *frame
	timer *time.Timer // kill timer armed when the caller gave up
}

// workerCommand returns the command that runs a worker: this executable,
// with ELEMTA_PLUGIN_WORKER=1.
func workerCommand() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable to start a worker: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	return cmd, nil
}

// startProcess starts a worker, sends it init and waits until it has built
// and started the plugin (or ctx ends).
func startProcess(ctx context.Context, init initFrame, host registry.Host, log *slog.Logger) (*process, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		// Room for a large message in one write: fewer wake-ups of the
		// other process per call. The kernel caps it at net.core.wmem_max.
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, socketBuffer)
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, socketBuffer)
	}
	hostEnd, workerEnd := os.NewFile(uintptr(fds[0]), "plugin-worker"), os.NewFile(uintptr(fds[1]), "plugin-host")
	defer workerEnd.Close()
	c, err := net.FileConn(hostEnd)
	_ = hostEnd.Close()
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	cmd, err := workerCommand()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	p := &process{cmd: cmd, k: newConn(c), host: host, log: log, pending: map[uint64]*pendingCall{},
		ready: make(chan error, 1), closed: make(chan string, 1), dead: make(chan struct{}), readDone: make(chan struct{}),
		stderr: &tail{max: stderrTail}}
	p.services, p.stop = context.WithCancel(context.Background())
	cmd.ExtraFiles = []*os.File{workerEnd}
	cmd.Stderr = p.stderr
	// Pdeathsig: the kernel kills the worker when the server dies, even by
	// SIGKILL. It fires when the creating thread exits; Go keeps its threads
	// unless a goroutine exits locked to one, which this package never does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.stop()
		_ = c.Close()
		return nil, fmt.Errorf("start worker %s: %w", cmd.Path, err)
	}
	p.pid, p.started = cmd.Process.Pid, time.Now()
	init.ParentPID = os.Getpid()
	go p.readLoop()
	go func() {
		<-p.readDone
		_ = cmd.Wait() // reaps it; the process was killed if still running
		close(p.dead)
	}()
	if err := p.k.send(&frame{Kind: kindInit, Init: &init}); err != nil {
		p.kill(err)
		<-p.dead
		return nil, p.why()
	}
	select {
	case err := <-p.ready:
		if err != nil {
			p.kill(err)
			<-p.dead
			return nil, err
		}
		return p, nil
	case <-p.dead:
		return nil, p.why()
	case <-ctx.Done():
		p.kill(fmt.Errorf("worker not ready: %w", ctx.Err()))
		<-p.dead
		return nil, p.why()
	}
}

// readLoop reads the worker's frames until the connection ends, then
// kills the worker and fails the calls still waiting.
func (p *process) readLoop() {
	defer close(p.readDone)
	for {
		f, err := p.k.recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("worker closed the connection")
			}
			p.kill(err)
			return
		}
		switch f.Kind {
		case kindReady:
			var err error
			if f.Err != "" {
				err = errors.New(f.Err)
			}
			select {
			case p.ready <- err:
			default:
				p.kill(fmt.Errorf("%w: second ready frame", errConn))
				return
			}
		case kindReply:
			p.mu.Lock()
			pc := p.pending[f.ID]
			delete(p.pending, f.ID)
			if pc != nil {
				p.inflight--
				if pc.timer != nil {
					pc.timer.Stop()
				}
			}
			p.mu.Unlock()
			if pc == nil {
				p.kill(fmt.Errorf("%w: reply to unknown call %d", errConn, f.ID))
				return
			}
			pc.reply <- f
		case kindClosed:
			select {
			case p.closed <- f.Err:
			default:
			}
		case kindLog:
			if f.Log != nil {
				p.emit(f.Log)
			}
		case kindDNS:
			if f.DNS == nil {
				p.kill(fmt.Errorf("%w: DNS frame without a query", errConn))
				return
			}
			go func() {
				a := answerDNS(p.services, p.host.Resolver, f.DNS)
				if err := p.k.send(&frame{ID: f.ID, Kind: kindDNS, DNS: a}); err != nil {
					p.kill(err)
				}
			}()
		case kindClock:
			if err := p.k.send(&frame{ID: f.ID, Kind: kindClock, Clock: &clockFrame{Now: p.host.Clock.Now()}}); err != nil {
				p.kill(err)
				return
			}
		default:
			p.kill(fmt.Errorf("%w: unexpected frame kind %d from the worker", errConn, f.Kind))
			return
		}
	}
}

func (p *process) emit(l *logFrame) {
	attrs := make([]slog.Attr, 0, len(l.Attrs)+1)
	for _, a := range l.Attrs {
		attrs = append(attrs, slog.String(a.Key, a.Value))
	}
	r := slog.NewRecord(l.Time, slog.Level(l.Level), l.Msg, 0)
	r.AddAttrs(attrs...)
	if h := p.log.Handler(); h.Enabled(context.Background(), r.Level) {
		_ = h.Handle(context.Background(), r)
	}
}

// kill ends the worker: SIGKILL, the connection closed, every waiting call
// failed with why. It is safe to call more than once; the first reason wins.
func (p *process) kill(why error) {
	p.mu.Lock()
	if p.deadErr == nil {
		p.deadErr = why
	}
	pending := p.pending
	p.pending = map[uint64]*pendingCall{}
	p.inflight = 0
	p.mu.Unlock()
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	_ = p.k.c.Close()
	p.stop()
	for _, pc := range pending {
		if pc.timer != nil {
			pc.timer.Stop()
		}
		close(pc.reply)
	}
}

// why says why the worker is gone: the first reason, its exit status and
// the end of its stderr. Call it after dead is closed.
func (p *process) why() error {
	p.mu.Lock()
	err := p.deadErr
	p.mu.Unlock()
	if err == nil {
		err = errors.New("worker exited")
	}
	status := ""
	if ps := p.cmd.ProcessState; ps != nil {
		status = ps.String()
	}
	msg := fmt.Sprintf("worker pid %d: %v", p.pid, err)
	if status != "" {
		msg += " (" + status + ")"
	}
	if t := p.stderr.last(); t != "" {
		msg += ": " + t
	}
	return &WorkerError{msg: msg, err: err}
}

// WorkerError is the error of a call whose worker process died, hung,
// broke the protocol or could not start.
type WorkerError struct {
	msg string
	err error
}

func (e *WorkerError) Error() string { return e.msg }
func (e *WorkerError) Unwrap() error { return e.err }

// call sends one call and waits for its reply, ctx or the worker's death.
// When ctx ends first the worker is told to cancel, and killed if it has
// not answered cancelGrace later.
func (p *process) call(ctx context.Context, cf *callFrame) (*replyFrame, error) {
	pc := &pendingCall{reply: make(chan *frame, 1)}
	p.mu.Lock()
	if p.deadErr != nil {
		p.mu.Unlock()
		<-p.dead
		return nil, p.why()
	}
	p.nextID++
	id := p.nextID
	p.pending[id] = pc
	p.inflight++
	p.served++
	p.mu.Unlock()
	if d, ok := ctx.Deadline(); ok {
		cf.Deadline = d
	}
	if err := p.k.send(&frame{ID: id, Kind: kindCall, Call: cf}); err != nil {
		p.kill(err)
		<-p.dead
		return nil, p.why()
	}
	select {
	case f, ok := <-pc.reply:
		if !ok {
			<-p.dead
			return nil, p.why()
		}
		if f.Reply == nil {
			p.kill(fmt.Errorf("%w: reply frame without a reply", errConn))
			return nil, errors.New("worker sent a reply frame without a reply")
		}
		return f.Reply, nil
	case <-ctx.Done():
		p.mu.Lock()
		if _, waiting := p.pending[id]; waiting {
			pc.timer = time.AfterFunc(cancelGrace, func() {
				p.mu.Lock()
				_, still := p.pending[id]
				p.mu.Unlock()
				if still {
					p.kill(fmt.Errorf("%s ignored its context: no answer %v after it ended", cf.Method, cancelGrace))
				}
			})
		}
		p.mu.Unlock()
		_ = p.k.send(&frame{ID: id, Kind: kindCancel})
		return nil, ctx.Err()
	}
}

// shutdown asks the worker to close its plugin and exit, waits up to
// closeGrace, then kills it. It returns the plugin's Close error.
func (p *process) shutdown() error {
	var closeErr error
	if err := p.k.send(&frame{Kind: kindClose}); err == nil {
		t := time.NewTimer(closeGrace)
		defer t.Stop()
		select {
		case e := <-p.closed:
			if e != "" {
				closeErr = errors.New(e)
			}
			select {
			case <-p.dead:
			case <-t.C:
			}
		case <-p.dead:
		case <-t.C:
			closeErr = fmt.Errorf("worker pid %d did not close within %v: killed", p.pid, closeGrace)
		}
	}
	p.kill(errors.New("worker shut down"))
	<-p.dead
	return closeErr
}

func (p *process) alive() bool {
	select {
	case <-p.dead:
		return false
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deadErr == nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// last returns the first lines of what was kept (a Go crash begins with
// its reason), on one line.
func (t *tail) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	lines := strings.Split(s, "\n")
	if len(lines) > 3 {
		lines = lines[:3]
	}
	return strings.Join(lines, " | ")
}
