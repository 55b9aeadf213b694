package clientgo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/klog/v2"
)

// childEnv, set to "1", makes a binary that imports this package run as
// the client process (childMain) instead of itself: the dialer starts
// its own executable so, that the client is a process of its own that
// can be killed for real, with nothing to build.
const childEnv = "EXECCONFORM_CLIENTGO_CHILD"

func init() {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childMain())
	}
}

// request is what the dialer tells its child, as the first line of the
// control pipe (fd 3): never in argv or the environment, since it holds
// the token.
type request struct {
	ExecURL  string
	Host     string
	Token    string `json:",omitempty"`
	CAData   []byte `json:",omitempty"`
	Insecure bool   `json:",omitempty"`
	// Executor: "fallback" (WebSocket v5, then SPDY on an upgrade
	// failure, as kubectl), or "spdy".
	Executor string
	TTY      bool
}

// control is a later line of the control pipe.
type control struct {
	Op            string // "resize", "cancel"
	Width, Height uint16 `json:",omitempty"`
}

// event is a line the child writes on fd 4.
type event struct {
	Event string // "exit"
	// Err is the executor's error ("" for none); Code the exit code it
	// carries (utilexec.ExitError), -1 for none.
	Err  string `json:",omitempty"`
	Code int
}

type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q
	if !ok {
		return nil
	}
	return &s
}

// childMain runs one exec with client-go's executor: stdin from our
// stdin, output to our stdout and stderr, resizes and a cancel from the
// control pipe; it reports the executor's result on fd 4.
func childMain() int {
	ctl := os.NewFile(3, "control")
	events := os.NewFile(4, "events")
	if ctl == nil || events == nil {
		fmt.Fprintln(os.Stderr, "clientgo child: no control pipes")
		return 2
	}
	// client-go's own log lines would mix with the exec's stderr.
	klog.SetLogger(logr.Discard())
	lines := bufio.NewScanner(ctl)
	if !lines.Scan() {
		fmt.Fprintln(os.Stderr, "clientgo child: no request")
		return 2
	}
	var req request
	if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
		fmt.Fprintln(os.Stderr, "clientgo child: bad request:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sizes := make(sizeQueue, 4)
	go func() {
		for lines.Scan() {
			var c control
			if json.Unmarshal(lines.Bytes(), &c) != nil {
				continue
			}
			switch c.Op {
			case "resize":
				select {
				case sizes <- remotecommand.TerminalSize{Width: c.Width, Height: c.Height}:
				default:
				}
			case "cancel":
				cancel()
			}
		}
		// The dialer's end of the pipe closed: it is gone, so are we.
		cancel()
	}()
	err := run(ctx, req, sizes)
	ev := event{Code: -1}
	if err != nil {
		ev.Err = err.Error()
		var ee utilexec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			ev.Code = ee.ExitStatus()
		}
	} else {
		ev.Code = 0
	}
	b, _ := json.Marshal(ev)
	_, _ = events.Write(append(b, '\n'))
	return 0
}

// run builds the executor and streams.
func run(ctx context.Context, req request, sizes sizeQueue) error {
	cfg := &rest.Config{
		Host:            req.Host,
		BearerToken:     req.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: req.CAData, Insecure: req.Insecure},
		// Straight to the proxy under test, whatever the environment says.
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	u, err := url.Parse(req.ExecURL)
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
	if err != nil {
		return err
	}
	ex := spdy
	if req.Executor != "spdy" {
		ws, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, u.String())
		if err != nil {
			return err
		}
		// kubectl's choice of when to fall back.
		fallback := func(err error) bool { return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) }
		if ex, err = remotecommand.NewFallbackExecutor(ws, spdy, fallback); err != nil {
			return err
		}
	}
	opts := remotecommand.StreamOptions{Stdin: os.Stdin, Stdout: os.Stdout, Tty: req.TTY}
	if req.TTY {
		opts.TerminalSizeQueue = sizes
	} else {
		opts.Stderr = os.Stderr
	}
	return ex.StreamWithContext(ctx, opts)
}
