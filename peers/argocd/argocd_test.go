package argocd_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/janitor"
	"github.com/execconform/execconform/peers/argocd"
	"github.com/execconform/execconform/scenarios"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	janitor.RunIfJanitor()
	if err := janitor.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "argocd: %v\n", err)
	}
	logrus.SetOutput(io.Discard) // the terminal logs every broken session
	m.Run()
}

// cases selects cases of the dialect matrix by name.
func cases(t *testing.T, expr string) []scenarios.Case {
	t.Helper()
	d, err := argocd.Dialect()
	require.NoError(t, err)
	all, _ := scenarios.DialectCases(scenarios.All(), d)
	cs := scenarios.Filter{Run: regexp.MustCompile(expr)}.Apply(all)
	require.NotEmpty(t, cs, expr)
	return cs
}

// TestTerminalRunsEndToEnd: a user typing exit through Argo CD's terminal
// ends the session (the handler found the app, the pod and its container,
// and its executor reached the fake API server); without the
// argocd.token cookie the handler refuses the upgrade.
func TestTerminalRunsEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	p := argocd.Peer()
	exit := cases(t, `^argocd/tty/shell/user-types-exit$`)
	opts := harness.Options{Parallel: 2, ClientHeader: p.ClientHeader, Namespace: argocd.PodNamespace, Pod: argocd.PodName}
	rep := harness.Run(ctx, p.Target, exit, opts)
	require.Len(t, rep.Results, 1)
	r := rep.Results[0]
	// The shell ends and the backend's close is clean; what fails is Argo
	// CD's own end of the browser's connection: after startProcess returns
	// it calls session.Close, gorilla's Conn.Close, which closes the TCP
	// connection without a close frame.
	assert.Equal(t, harness.Fail, r.Verdict, "%s: %s", r.Name, strings.Join(r.Failures, "; "))
	assert.Equal(t, []string{"the client got close code -1 from the proxy, want 1000 (the backend sent 1000)"}, r.Failures)

	opts.ClientHeader = nil
	rep = harness.Run(ctx, p.Target, exit, opts)
	require.Len(t, rep.Results, 1)
	r = rep.Results[0]
	assert.Equal(t, harness.Fail, r.Verdict)
	assert.Contains(t, strings.Join(r.Failures, "; "), "HTTP 400", "no argocd.token cookie: Failed to start terminal session")
}

// TestDialectIsArgoCDs: the dialect's URL carries every query parameter
// the handler requires, naming the peer's Application.
func TestDialectIsArgoCDs(t *testing.T) {
	d, err := argocd.Dialect()
	require.NoError(t, err)
	assert.Equal(t, "argocd", d.Name)
	for _, q := range []string{"pod={pod}", "container={container}", "appName=" + argocd.AppName, "projectName=" + argocd.Project,
		"namespace={namespace}", "appNamespace=" + argocd.ArgoNamespace, "shell={shell}"} {
		assert.Contains(t, d.Path, q)
	}
	assert.True(t, strings.HasPrefix(d.Path, "/terminal?"))
}
