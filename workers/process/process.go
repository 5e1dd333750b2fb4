// Package process runs the stateless verifier as local subprocesses, one per
// mini-batch, all at once (WORKER_MODE=process, the original's TEST_ENV
// mode).
//
// The command is WORKER_COMMAND, split like a shell would split it but never
// run by one, or by default the original's "docker run" of
// WORKER_IMAGE:WORKER_TAG. The mini-batch's START and END (see
// workers.FormatTimestamp) are appended as the last two arguments. Each
// child's environment is the coordinator's own, plus the verifier contract's
// variables (workers.Env) and the original's JobName, BatchStart and
// BatchEnd.
//
// Every line a child prints is logged. The batch fails when a child exits
// non-zero or the batch outlives WORKER_TIMEOUT; the other children are then
// stopped: SIGTERM to their process group, SIGKILL after a grace period, and
// always waited for.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/coordinator"
	"github.com/delegation-program/uptime-coordinator/workers"
)

// DefaultGrace is how long a child may take to exit after SIGTERM before it
// gets SIGKILL, when Launcher.Grace is zero.
const DefaultGrace = 10 * time.Second

// Launcher is the process-mode coordinator.Launcher.
type Launcher struct {
	Options workers.Options
	Logger  *slog.Logger // default slog.Default()
	// Environ is the base environment of the children, as "NAME=value"
	// entries; nil means Options.PassEnv (PATH, HOME, TZ and
	// WORKER_ENV_ALLOW): never the coordinator's whole environment.
	Environ []string
	// GroupsDir holds the records of the verifiers' process groups, one
	// file per launcher, so that the next coordinator ends what a killed
	// one left (see endLeftovers); "" picks a directory per database in
	// the temporary directory.
	GroupsDir string
	leftovers sync.Once
	// Grace is the time between SIGTERM and SIGKILL when children are
	// stopped (default DefaultGrace).
	Grace time.Duration
	Now   func() time.Time // default time.Now; names the children
	// Events, when set, counts the children started and failed (a failure is
	// a non-zero exit or a child stopped by WORKER_TIMEOUT).
	Events workers.Events
}

// Mode is the worker mode this package implements, as passed to Events.
const Mode = workers.ModeProcess

func (l *Launcher) events() workers.Events {
	if l.Events != nil {
		return l.Events
	}
	return workers.NoEvents{}
}

var _ coordinator.Launcher = (*Launcher)(nil)

// New returns a Launcher with the options o.
func New(o workers.Options, log *slog.Logger) *Launcher {
	return &Launcher{Options: o, Logger: log}
}

func (l *Launcher) log() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

func (l *Launcher) grace() time.Duration {
	if l.Grace > 0 {
		return l.Grace
	}
	return DefaultGrace
}

// Spec is what a Launcher runs for one mini-batch.
type Spec struct {
	Index int
	Name  string // the original's process name, also the JobName variable
	Part  coordinator.Window
	Args  []string // the command and its arguments, START and END last
	// Env is the contract's variables for this child, each overriding the
	// base environment.
	Env []workers.EnvVar
	// Container is the docker container's name when the command is the
	// default docker run (DockerArgs): stopping the client does not stop
	// the container, so the launcher removes it.
	Container string
}

// Specs builds the command lines and environments of the mini-batches of a
// batch. cassandraHost is the resolved CASSANDRA_HOST (workers.ResolveHost).
func (l *Launcher) Specs(parts []coordinator.Window, cassandraHost string, now time.Time) ([]Spec, error) {
	o := l.Options
	var base []string
	if o.Command != "" {
		var err error
		base, err = shellquote.Split(o.Command)
		if err != nil {
			return nil, fmt.Errorf("WORKER_COMMAND: %w", err)
		}
		if len(base) == 0 {
			return nil, errors.New("WORKER_COMMAND: no command")
		}
	}
	specs := make([]Spec, len(parts))
	for i, p := range parts {
		name := ProcessName(now, i)
		start, end := workers.FormatTimestamp(p.Start), workers.FormatTimestamp(p.End)
		env := workers.Env(o, name, p.Start, p.End, cassandraHost)
		for k := range env {
			// A local verifier shares the coordinator's file system.
			if env[k].Name == "SSL_CERTFILE" {
				env[k].Value = o.Cassandra.SSLCertFile
			}
		}
		env = append(env,
			workers.EnvVar{Name: "JobName", Value: name},
			workers.EnvVar{Name: "BatchStart", Value: PythonTime(p.Start)},
			workers.EnvVar{Name: "BatchEnd", Value: PythonTime(p.End)})
		var args []string
		container := ""
		if base != nil {
			args = append(slices.Clone(base), start, end)
		} else {
			container = name
			args = DockerArgs(o, cassandraHost, start, end)
			// Named and labelled, so that it can be removed when stopped and
			// found by the next coordinator when this one was killed.
			labels := []string{"--name", name, "--label", containerLabel + "=" + l.groupsKey()}
			if me, ok := self(); ok {
				labels = append(labels, "--label", ownerLabel+"="+me.String())
			}
			args = slices.Insert(args, 2, labels...)
		}
		specs[i] = Spec{Index: i, Name: name, Part: p, Args: args, Env: env, Container: container}
	}
	return specs, nil
}

// ProcessName names the child of mini-batch i as the original did:
// "local-validator-" and now (UTC) as yy-mm-dd-HH-MM, then "-" and i.
func ProcessName(now time.Time, i int) string {
	return fmt.Sprintf("local-validator-%s-%d", now.UTC().Format("06-01-02-15-04"), i)
}

// PythonTime renders t (UTC) as Python's str() renders an aware datetime,
// the form of the original's BatchStart and BatchEnd variables:
// "2024-06-01 00:04:00+00:00" or, with microseconds,
// "2024-06-01 00:04:00.500000+00:00".
func PythonTime(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02 15:04:05") + "+00:00"
	}
	return t.Format("2006-01-02 15:04:05.000000") + "+00:00"
}

// DockerArgs is the original's default verifier command: the verifier image
// in docker on the host's network, with the certificate mounted and the
// variables passed as the original passed them (a bare "-e NAME" hands on
// the child's own value). The certificate is left out when SSL_CERTFILE is
// not set.
func DockerArgs(o workers.Options, cassandraHost, start, end string) []string {
	args := []string{"docker", "run", "--network", "host", "--rm"}
	if o.Cassandra.SSLCertFile != "" {
		args = append(args, "-v", o.Cassandra.SSLCertFile+":/var/ssl/ssl-cert.crt")
	}
	env := []string{
		"CASSANDRA_HOST=" + cassandraHost, "CASSANDRA_PORT", "CASSANDRA_USERNAME", "CASSANDRA_PASSWORD",
		"AWS_KEYSPACE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_S3_BUCKET",
		"AWS_REGION", "NETWORK_NAME=" + o.NetworkName, "NO_CHECKS",
	}
	if o.Cassandra.SSLCertFile != "" {
		env = append(env, "SSL_CERTFILE=/var/ssl/ssl-cert.crt")
	}
	env = append(env, "SUBMISSION_STORAGE="+o.SubmissionStorage, "POSTGRES_HOST="+o.Postgres.Host,
		"POSTGRES_DB="+o.Postgres.DB, "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PORT", "POSTGRES_SSLMODE")
	for _, e := range env {
		args = append(args, "-e", e)
	}
	return append(args, o.ImageRef(), start, end)
}

// environ merges base with vars: vars override base entries of the same
// name and follow them in their own order.
func environ(base []string, vars []workers.EnvVar) []string {
	set := make(map[string]bool, len(vars))
	for _, v := range vars {
		set[v.Name] = true
	}
	out := make([]string, 0, len(base)+len(vars))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !set[name] {
			out = append(out, kv)
		}
	}
	for _, v := range vars {
		out = append(out, v.Name+"="+v.Value)
	}
	return out
}

// Verify runs one child per mini-batch and returns when all succeeded, or
// with an error once one failed, the batch timed out or ctx ended; the other
// children are then stopped and waited for.
func (l *Launcher) Verify(ctx context.Context, batch coordinator.Window, parts []coordinator.Window) error {
	if len(parts) == 0 {
		return nil
	}
	log := l.log().With("batch_start", batch.Start, "batch_end", batch.End)
	runCtx, cancel := l.Options.WithTimeout(ctx)
	defer cancel()
	host, err := l.Options.Prelude(runCtx, log)
	if err != nil {
		return err
	}
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	specs, err := l.Specs(parts, host, now)
	if err != nil {
		return err
	}
	base := l.Environ
	if base == nil {
		base = l.Options.PassEnv
	}
	mask := l.Options.Masker()
	l.leftovers.Do(func() {
		endLeftovers(l.groupsDir(), log)
		if l.Options.Command == "" {
			l.endLeftoverContainers(ctx, log)
		}
	})
	groups := l.newRecord()
	var stoppedContainers []string
	defer func() {
		// Stopping a docker client does not stop its container.
		removeContainers(ctx, log, stoppedContainers...)
		// Every child is reaped by now, its group killed: nothing to record.
		groups.clear(log)
		if pids := endEscapees(l.grace()); len(pids) > 0 {
			log.Warn("ended what verifiers left running outside their process groups", "pids", pids)
		}
	}()

	children := make([]*child, 0, len(specs))
	results := make(chan *child, len(specs))
	var startErr error
	for _, s := range specs {
		masked := make([]string, len(s.Args))
		for i, a := range s.Args {
			masked[i] = mask.Replace(a)
		}
		clog := log.With("mini_batch", s.Index, "worker", s.Name)
		// Verifiers log JSON, which the child's log relays as records.
		env := append(environ(base, s.Env), "LOG_FORMAT="+config.LogJSON)
		c := newChild(s, env, mask, clog, l.grace())
		if err := c.start(); err != nil {
			startErr = fmt.Errorf("mini-batch %d (%s): starting %s: %w", s.Index, s.Name, mask.Replace(s.Args[0]), err)
			break
		}
		if err := groups.add(c.pid()); err != nil {
			log.Warn("the verifier's process group is not recorded: a coordinator killed now would leave its children running", "error", err)
		}
		l.events().Started(Mode)
		clog.Info("verifier launched", "pid", c.pid(), "start", workers.FormatTimestamp(s.Part.Start),
			"end", workers.FormatTimestamp(s.Part.End), "command", shellquote.Join(masked...))
		children = append(children, c)
		go func() {
			c.wait()
			results <- c
		}()
	}

	// Wait for every child. The first failure, the timeout or the end of
	// ctx stops the others; their exits are then not failures of their own.
	var (
		failures []error
		running  []int // mini-batches still running when ctx ended
		stopping bool
	)
	stopAll := func() {
		if !stopping {
			stopping = true
			for _, c := range children {
				go c.stop()
			}
		}
	}
	if startErr != nil {
		stopAll()
	}
	done := runCtx.Done()
	for n := 0; n < len(children); {
		select {
		case c := <-results:
			n++
			if c.spec.Container != "" && c.stopped() {
				stoppedContainers = append(stoppedContainers, c.spec.Container)
			}
			switch {
			case c.err == nil:
				c.log.Info("verifier finished", "took", c.took().Round(time.Millisecond))
			case c.stopped():
				c.log.Info("verifier stopped", "status", c.err.Error())
			default:
				l.events().Failed(Mode)
				failures = append(failures, c.failure(len(parts)))
				stopAll()
			}
		case <-done:
			done = nil
			if !stopping {
				for _, c := range children {
					if !c.exited() {
						running = append(running, c.spec.Index)
					}
				}
			}
			stopAll()
		}
	}

	switch {
	case startErr != nil:
		return errors.Join(append([]error{startErr}, failures...)...)
	case len(failures) > 0:
		return errors.Join(failures...)
	case ctx.Err() != nil:
		return fmt.Errorf("verification stopped, verifiers killed: %w", ctx.Err())
	case workers.TimedOut(runCtx) && running != nil:
		for range running {
			l.events().Failed(Mode)
		}
		return fmt.Errorf("%w: mini-batches %v still running after WORKER_TIMEOUT=%v were killed",
			workers.ErrTimeout, running, l.Options.Timeout)
	}
	log.Info("all verifiers finished", "mini_batches", len(children))
	return nil
}
