package process

import (
	"bytes"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/internal/logging"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// stderrTail is how many of a child's last stderr lines its failure quotes.
const stderrTail = 10

// child is one running verifier process.
type child struct {
	spec   Spec
	cmd    *exec.Cmd
	log    *slog.Logger
	mask   *strings.Replacer
	grace  time.Duration
	stdout *lineLog
	stderr *lineLog
	began  time.Time
	ended  time.Time
	err    error         // the exit, once done is closed
	done   chan struct{} // closed when the child is reaped and its output read

	mu       sync.Mutex
	leftPid  bool // the process has exited: its pid no longer names it
	signaled bool // stop signalled it
}

func newChild(s Spec, env []string, mask *strings.Replacer, log *slog.Logger, grace time.Duration) *child {
	c := &child{spec: s, log: log, mask: mask, grace: grace, done: make(chan struct{})}
	c.stdout = &lineLog{log: log, stream: "stdout", mask: mask}
	c.stderr = &lineLog{log: log, stream: "stderr", mask: mask, tail: stderrTail}
	cmd := exec.Command(s.Args[0], s.Args[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	cmd.SysProcAttr = sysProcAttr()
	// Should a process that left the group keep the pipes open after the
	// child exited, stop waiting for its output after the grace period.
	cmd.WaitDelay = grace
	c.cmd = cmd
	return c
}

// started holds the pids of the verifiers this process started and has not
// reaped yet, so that endEscapees tells them from what they left.
var started = struct {
	sync.Mutex
	pids map[int]bool
}{pids: map[int]bool{}}

func (c *child) start() error {
	c.began = time.Now()
	started.Lock()
	defer started.Unlock()
	if err := c.cmd.Start(); err != nil {
		return err
	}
	started.pids[c.cmd.Process.Pid] = true
	return nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// wait waits for the child to exit, kills what remains of its process
// group, reaps it and reads the rest of its output. It closes c.done.
func (c *child) wait() {
	defer close(c.done)
	if awaitExit(c.cmd.Process) {
		// The child is a zombie: its pid, and so its process group id,
		// cannot be reused until it is reaped. Kill anything it left.
		c.mu.Lock()
		if err := signalGroup(c.cmd.Process, syscall.SIGKILL); err != nil {
			c.log.Warn("killing what a verifier left running failed", "error", err)
		}
		c.leftPid = true
		c.mu.Unlock()
	}
	c.err = c.cmd.Wait()
	c.mu.Lock()
	c.leftPid = true
	c.mu.Unlock()
	started.Lock()
	delete(started.pids, c.pid())
	started.Unlock()
	// What the verifier started and left in its group was reparented to
	// the coordinator when it is the subreaper: reap it (killed above).
	if n, err := reapGroup(c.pid(), c.grace); err != nil {
		c.log.Warn("reaping what a verifier left running failed", "error", err)
	} else if n > 0 {
		c.log.Info("reaped what the verifier left in its process group", "processes", n)
	}
	c.ended = time.Now()
	c.stdout.flush()
	c.stderr.flush()
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *child) took() time.Duration { return c.ended.Sub(c.began) }

// signal sends sig to the child's process group while the child has not
// exited, and reports whether it did.
func (c *child) signal(sig syscall.Signal) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leftPid {
		return false
	}
	c.signaled = true
	if err := signalGroup(c.cmd.Process, sig); err != nil {
		c.log.Warn("signalling a verifier failed", "signal", sig.String(), "error", err)
	}
	return true
}

// stopped reports whether stop signalled the child before it exited.
func (c *child) stopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signaled
}

// stop terminates the child's process group: SIGTERM, then SIGKILL when
// it has not exited after the grace period. It returns once the child is
// reaped.
func (c *child) stop() {
	if c.signal(syscall.SIGTERM) {
		c.log.Info("stopping verifier", "pid", c.pid())
		t := time.NewTimer(c.grace)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			if c.signal(syscall.SIGKILL) {
				c.log.Warn("verifier ignored SIGTERM; killed", "pid", c.pid(), "grace", c.grace)
			}
		}
	}
	<-c.done
}

// failure describes a child that failed on its own.
func (c *child) failure(parts int) error {
	return &WorkerError{
		Index: c.spec.Index, Of: parts, Name: c.spec.Name, Part: c.spec.Part,
		Err: c.err, Stderr: c.stderr.lastLines(),
	}
}

// WorkerError is the failure of one mini-batch's verifier.
type WorkerError struct {
	Index, Of int // mini-batch Index of Of
	Name      string
	Part      coordinator.Window
	Err       error    // from exec: the exit status
	Stderr    []string // the last lines the verifier printed to stderr, secrets masked
}

func (e *WorkerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mini-batch %d of %d (%s, %s - %s) failed: %v", e.Index, e.Of, e.Name,
		workers.FormatTimestamp(e.Part.Start), workers.FormatTimestamp(e.Part.End), e.Err)
	if len(e.Stderr) > 0 {
		b.WriteString("; last stderr lines:")
		for _, l := range e.Stderr {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

func (e *WorkerError) Unwrap() error { return e.Err }

// maxLine is the longest line logged in one record; longer lines are logged
// in pieces.
const maxLine = 64 << 10

// maxTailLine is how much of a stderr line a WorkerError quotes.
const maxTailLine = 500

// lineLog logs what a child writes to one stream, line by line. exec calls
// Write from one goroutine per stream; flush and lastLines run after Wait.
type lineLog struct {
	log    *slog.Logger
	stream string
	mask   *strings.Replacer
	buf    []byte
	tail   int
	last   []string
}

func (w *lineLog) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.emit(w.buf[:maxLine])
				w.buf = w.buf[maxLine:]
			}
			break
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, p[:i]...)
			w.emit(w.buf)
			w.buf = w.buf[:0]
		} else {
			w.emit(p[:i])
		}
		p = p[i+1:]
	}
	if len(w.buf) == 0 && cap(w.buf) > maxLine {
		w.buf = nil // do not keep a huge buffer
	}
	return n, nil
}

func (w *lineLog) emit(line []byte) {
	for len(line) > maxLine {
		w.emit(line[:maxLine])
		line = line[maxLine:]
	}
	s := w.mask.Replace(strings.TrimSuffix(string(line), "\r"))
	// The bundled verifier logs JSON (LOG_FORMAT=json, set by the
	// launcher): its records join the coordinator's log as records; any
	// other output is logged line by line.
	if !logging.Relay(w.log, s, slog.String("stream", w.stream)) {
		w.log.Info("verifier output", "stream", w.stream, "line", s)
	}
	if w.tail > 0 {
		if len(s) > maxTailLine {
			s = s[:maxTailLine] + "..."
		}
		if len(w.last) == w.tail {
			w.last = append(w.last[:0], w.last[1:]...)
		}
		w.last = append(w.last, s)
	}
}

func (w *lineLog) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *lineLog) lastLines() []string { return w.last }
