package census

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/internal/schemafile"
)

// censusSchema compiles docs/census.schema.json.
func censusSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	s, err := schemafile.Compile(filepath.Join("..", "docs", "census.schema.json"))
	require.NoError(t, err)
	return s
}

// sampleReport is a report of every kind of field: the recorded
// container's trees (flagged, unflagged, with children, without tty
// times), a container that could not be read, and a reap.
func sampleReport(t *testing.T) *Report {
	o := Options{Rules: Rules{Idle: time.Hour}, Max: 0, Scope: Scope{Namespace: "db", Selector: "app=db", Pods: []string{"db-0"}}}
	r := newReport(time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC), o)
	res := o.Rules.Result(loadDump(t), ExecRoot)
	res.Namespace, res.Pod, res.Container, res.Node, res.Cost = "db", "db-0", "postgres", "node-1", 84.5
	r.Pods = append(r.Pods, res, PodResult{Namespace: "db", Pod: "db-1", Container: "postgres", Error: "exec refused: 403", Roots: []Root{}})
	r.Reaped = []ReapResult{{Namespace: "db", Pod: "db-0", Container: "postgres", Ended: 2, FlaggedAfter: 0, Targets: []ReapTarget{
		{PID: 20, StartTicks: 200000, Comm: "sh", Root: true, Signals: []string{"HUP"}, Outcome: "ended"},
		{PID: 62, StartTicks: 500200, Comm: "python3", Signals: []string{"HUP", "KILL"}, Outcome: "ended"},
		{PID: 63, StartTicks: 5, Comm: "x", Signals: []string{}, Outcome: "reused"},
	}}}
	r.Duration = 120
	r.Sum()
	return r
}

// TestReportMatchesItsSchema: the JSON the census writes is what
// docs/census.schema.json says; a field the schema does not know is
// refused, so the two cannot drift apart.
func TestReportMatchesItsSchema(t *testing.T) {
	s := censusSchema(t)
	r := sampleReport(t)
	assert.Equal(t, Totals{Containers: 2, Failed: 1, Roots: 7, Flagged: 2}, r.Totals)
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.NoError(t, schemafile.Validate(s, b))

	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	m["surprise"] = 1
	assert.Error(t, s.Validate(m), "an unknown field is refused")
}

func TestReportTableAndMarkdown(t *testing.T) {
	r := sampleReport(t)
	var tb, md bytes.Buffer
	r.WriteTable(&tb, false)
	r.WriteMarkdown(&md)
	t.Logf("\n%s\n%s", tb.String(), md.String())
	assert.Contains(t, tb.String(), "db-0")
	assert.Contains(t, tb.String(), "exec refused")
	assert.Contains(t, tb.String(), "! db/db-0[postgres] pid 20 sh -i")
	assert.NotContains(t, tb.String(), "pid 30 ", "an unflagged tree only with -v")
	assert.Contains(t, md.String(), "| db | db-0 | postgres | 7 | 2 |")
	assert.Contains(t, md.String(), "**2 likely orphan(s)**")
	tb.Reset()
	r.WriteTable(&tb, true)
	assert.Contains(t, tb.String(), "pid 30 ")
}
