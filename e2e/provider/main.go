// Command e2e-provider brings up a place for the end-to-end tests to exec
// into, runs a command there, and takes it all down again:
//
//	e2e-provider kind    [flags] -- CMD ARGS...   a new kind cluster (sigs.k8s.io/kind's Go API), deleted at the end
//	e2e-provider cluster [flags] -- CMD ARGS...   any cluster of a kubeconfig (staging, OpenShift, ...): only our own objects
//
// In both, a pod of a small image (sh, env, ps, sleep; busybox by default)
// is created with a ServiceAccount that may exec into it and nothing else,
// and CMD (normally the e2e test binary) runs with the E2E_* variables of
// realapiserver.FromEnv:
//
//	e2e-provider ──kind Go API──> kind cluster (docker) ──> pod "execconform-target-XXXX"
//	     │  client-go: namespace, ServiceAccount, Role, RoleBinding, token, pod
//	     └── CMD with E2E_APISERVER, E2E_CA_FILE, E2E_TOKEN, E2E_NAMESPACE, E2E_POD, E2E_CONTAINER, E2E_PROCS, E2E_PROVIDER
//
// Teardown always runs: after CMD, after a failed setup, on SIGINT and
// SIGTERM (CMD gets the signal first); further SIGINTs and SIGTERMs are
// ignored until it is done. A kind cluster's logs are exported to
// --logs when setup or CMD failed. The exit status is CMD's; 125 when setup or
// teardown failed (CMD's own failure wins); 130/143 on SIGINT/SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// Exit statuses besides CMD's own.
const (
	exitSetup     = 125
	exitInterrupt = 130
)

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var p provider
	switch args[0] {
	case "kind":
		p = &kindProvider{}
	case "cluster":
		p = &clusterProvider{}
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "e2e-provider: unknown provider %q\n%s", args[0], usage)
		return 2
	}
	var o options
	fs := newFlags(args[0], &o, p)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		fmt.Fprintf(os.Stderr, "e2e-provider %s: no command to run (after --)\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	return session(ctx, p, o, cmd, sigs)
}

const usage = `usage:
  e2e-provider kind    [--name N] [--node-image IMG] [--config FILE] [--docker-shim PATH] [common flags] -- CMD ARGS...
  e2e-provider cluster --kubeconfig PATH --namespace NS [common flags] -- CMD ARGS...

common flags:
  --image IMG          the pod's image: needs sh, env, ps and sleep (default busybox:1.36)
  --pull-policy P      the pod's imagePullPolicy (default IfNotPresent)
  --procs host|pod     where shells are looked for: the host's /proc (kind on this machine)
                       or /proc inside the pod, through exec (any cluster)
  --logs DIR           where a failed run's cluster logs go
  --timeout D          bound on each wait of the setup (default 3m)
  --keep               leave everything running (prints how to remove it)

CMD runs with E2E_APISERVER, E2E_CA_FILE, E2E_TOKEN, E2E_NAMESPACE, E2E_POD,
E2E_CONTAINER, E2E_PROCS, E2E_PROVIDER and E2E_KUBECONFIG set.
`

// session sets up, runs cmd, and tears down whatever happened.
func session(ctx context.Context, p provider, o options, cmd []string, sigs <-chan os.Signal) (status int) {
	logf("%s: setting up", p.name())
	t0 := time.Now()
	var env *targetEnv
	failed := true
	defer func() {
		if o.keep {
			logf("%s: --keep: left running; %s", p.name(), p.keepHint())
			return
		}
		// Log export and teardown are not to be interrupted: a second
		// Ctrl-C would also reach kind's docker children (one process
		// group) and leave the cluster half deleted. Ignored signals stay
		// ignored in children. (For the rest of this process: it ends
		// after teardown.)
		signal.Ignore(os.Interrupt, syscall.SIGTERM)
		if failed && o.logs != "" {
			// kind goes on collecting after a failed command (e.g. no crictl
			// in an offline node image): what it got is still worth keeping.
			if err := p.exportLogs(o.logs); err != nil {
				logf("%s: logs in %s, some missing: %v", p.name(), o.logs, err)
			} else {
				logf("%s: logs in %s", p.name(), o.logs)
			}
		}
		// Teardown gets its own deadline: ctx may be cancelled by now.
		tctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		defer cancel()
		t := time.Now()
		defer func() { logf("%s: TIME teardown: %.1f s", p.name(), time.Since(t).Seconds()) }()
		if err := p.teardown(tctx, env); err != nil {
			logf("%s: ERROR: teardown: %v", p.name(), err)
			if status == 0 {
				status = exitSetup
			}
		}
	}()
	var err error
	env, err = p.setup(ctx, o)
	if err != nil {
		logf("%s: ERROR: setup: %v", p.name(), err)
		if ctx.Err() != nil {
			return exitInterrupt
		}
		return exitSetup
	}
	logf("%s: TIME setup: %.1f s", p.name(), time.Since(t0).Seconds())
	logf("%s: ready: pod %s/%s, API server %s (processes: %s)", p.name(), env.Namespace, env.Pod, env.APIServer, env.Procs)
	t1 := time.Now()
	status, err = runCommand(cmd, env, sigs)
	logf("%s: TIME command: %.1f s (status %d)", p.name(), time.Since(t1).Seconds(), status)
	if err != nil {
		logf("%s: ERROR: %v", p.name(), err)
		return exitSetup
	}
	failed = status != 0
	return status
}

// provider is one place the tests can run: it sets up a pod to exec into
// and removes everything it made.
type provider interface {
	name() string
	addFlags(fs *flagSet)
	setup(ctx context.Context, o options) (*targetEnv, error)
	// teardown removes what setup made (env may be nil or partial after a
	// failed setup); it must be safe to call whatever setup got to.
	teardown(ctx context.Context, env *targetEnv) error
	exportLogs(dir string) error
	keepHint() string
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "e2e-provider: "+format+"\n", a...)
}
