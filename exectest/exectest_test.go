package exectest_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/exectest"
	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/leakguard"
	"github.com/execconform/execconform/proxyundertest"
	"github.com/execconform/execconform/report"
)

func TestMain(m *testing.M) { leakguard.Main(m) }

// TestReportDir: with ReportDir, TestProxy writes every report once its
// subtests are over, with the cases that ran.
func TestReportDir(t *testing.T) {
	dir := t.TempDir()
	reference := exectest.HandlerTarget(func(b exectest.Backend) (http.Handler, error) {
		return proxyundertest.New(proxyundertest.Config{InsecureNoFrontAuth: true, Backend: b.URL, TLSConfig: b.TLSConfig, Token: b.Token,
			PingInterval: proxyundertest.SuitePingInterval, PongTimeout: proxyundertest.SuitePongTimeout})
	})
	t.Run("proxy", func(t *testing.T) {
		exectest.TestProxy(t, reference,
			exectest.Run(`^v5\.channel\.k8s\.io/(tty|notty)/disconnect/client-tcp-fin$`),
			exectest.ReportDir(dir, "the reference proxy, from go test"))
	})
	for _, name := range []string{report.JSONFile, report.JUnitFile, report.HTMLFile, report.MarkdownFile} {
		assert.FileExists(t, filepath.Join(dir, name))
	}
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	require.NoError(t, err)
	var f harness.ResultsFile
	require.NoError(t, json.Unmarshal(b, &f))
	assert.Equal(t, "the reference proxy, from go test", f.Target)
	require.Len(t, f.Results, 2)
	for _, r := range f.Results {
		assert.Equal(t, harness.Pass, r.Verdict, r.Name)
	}
	assert.Equal(t, harness.ExitPass, f.ExitCode)
}
