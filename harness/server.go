package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/execconform/execconform/fakeapiserver"
	"github.com/execconform/execconform/proctable"
)

// Server provides the API server each case execs into through the target:
// the embedded fake API server (FakeServer, the default) or a real
// cluster (package realapiserver).
type Server interface {
	// Open makes the API server ready for one case.
	Open(ctx context.Context, c CaseInfo) (CaseServer, error)
}

// CaseInfo is what a Server is told of the case it opens for.
type CaseInfo struct {
	Name           string // the case's name
	Namespace, Pod string // from Options (a real cluster may use its own)
	Logger         *slog.Logger
}

// CaseServer is one case's API server.
type CaseServer interface {
	// Backend is where the target must proxy to. The harness puts the
	// backend leg's fault link in front of Backend().URL.Host.
	Backend() Backend
	// Exec names what client session idx execs: the pod, the container
	// and the command (the server may mark the command to find the
	// session's processes).
	Exec(idx int, command []string) Exec
	// Session waits until the backend session of client session idx is open.
	Session(ctx context.Context, idx int) (BackendSession, error)
	// Close ends the case: it kills every process the case started and
	// releases the server.
	Close() error
}

// Exec is the exec request of one session.
type Exec struct {
	Namespace, Pod, Container string
	Command                   []string
}

// BackendSession is the API server's side of one exec session: the
// connection the target opened, as recorded, and the processes it runs,
// as the process table shows them.
type BackendSession interface {
	StartedAt() time.Time
	// Live lists the session's live processes; WaitGone waits until there
	// are none and returns how long that took.
	Live(ctx context.Context) ([]proctable.Proc, error)
	WaitGone(ctx context.Context) (time.Duration, []proctable.Proc, error)
	// Done is closed when the connection from the target has ended.
	Done() <-chan struct{}
	// Recorder has every frame of that connection and its close handshake.
	Recorder() *fakeapiserver.Recorder
	// Kill kills the session's processes (the backend-kill ending).
	Kill(ctx context.Context) error
	// Info describes the session, as evidence in a report.
	Info(ctx context.Context) (fakeapiserver.SessionInfo, error)
}

// FakeServer gives every case its own embedded fake API server, configured
// by cfg (its Logger is the case's).
func FakeServer(cfg fakeapiserver.Config) Server { return fakeServer{cfg} }

type fakeServer struct{ cfg fakeapiserver.Config }

func (f fakeServer) Open(_ context.Context, c CaseInfo) (CaseServer, error) {
	cfg := f.cfg
	cfg.Logger = c.Logger
	fake, err := fakeapiserver.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := fake.Start(); err != nil {
		return nil, err
	}
	// The case's sessions are all kept, whatever the retention: the
	// server lives as long as the case.
	fake.Hold(c.Pod)
	return &fakeCase{fake: fake, ns: c.Namespace, pod: c.Pod}, nil
}

type fakeCase struct {
	fake    *fakeapiserver.Server
	ns, pod string
}

func (f *fakeCase) Backend() Backend {
	return Backend{URL: f.fake.URL(), Token: f.fake.Token(), CAFile: f.fake.CAFile(), TLSConfig: f.fake.ClientTLSConfig()}
}

// Exec tells sessions apart by the container parameter, which the proxy
// forwards and the fake server records.
func (f *fakeCase) Exec(idx int, command []string) Exec {
	return Exec{Namespace: f.ns, Pod: f.pod, Container: fakeapiserver.ContainerName(idx), Command: command}
}

func (f *fakeCase) Session(ctx context.Context, idx int) (BackendSession, error) {
	container := fakeapiserver.ContainerName(idx)
	s, err := f.fake.WaitFor(ctx, func(s *fakeapiserver.Session) bool { return s.Pod == f.pod && s.Container == container })
	if err != nil {
		return nil, err // not a typed nil: the case's cleanup asks whether there is a session
	}
	return s, nil
}

func (f *fakeCase) Close() error { return f.fake.Close() }

// SharedFakeServer serves every case from one fake API server that the
// caller started (and closes): for a proxy that is already running and
// points at a fixed backend address. Each case gets a pod name of its own
// (Options.Pod, a dash, a number), which tells its sessions apart; the
// server keeps the pod's sessions while the case is open (Hold), and a
// case's Close kills their processes.
func SharedFakeServer(fake *fakeapiserver.Server) Server { return &sharedFake{fake: fake} }

type sharedFake struct {
	fake *fakeapiserver.Server
	n    atomic.Int64
}

func (s *sharedFake) Open(_ context.Context, c CaseInfo) (CaseServer, error) {
	pod := fmt.Sprintf("%s-%d", c.Pod, s.n.Add(1))
	return &sharedCase{fakeCase: fakeCase{fake: s.fake, ns: c.Namespace, pod: pod}, release: s.fake.Hold(pod)}, nil
}

type sharedCase struct {
	fakeCase
	release func() // of the server's hold on the case's pod
}

// Close kills what the case's sessions left running, then lets the
// server's retention have them; the server stays.
func (c *sharedCase) Close() error {
	defer c.release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range c.fake.Sessions() {
		if s.Pod == c.pod {
			if err := s.Kill(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// A Witness is a second view of a session's processes, checked against
// the process table: for a real cluster, ps aux run inside the pod.
type Witness interface {
	// Witness looks again, after the process table showed live (the
	// session's processes still alive after the grace window).
	Witness(ctx context.Context, live []proctable.Proc) (WitnessReport, error)
}

// WitnessReport is what a second witness saw.
type WitnessReport struct {
	Live     int    // the session's shells it saw alive
	Evidence string // what it saw, in words
	// Disagreement, when not empty, says how it contradicts the process table.
	Disagreement string
}
