package report_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	junit "github.com/joshdk/go-junit"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/schemafile"
	"github.com/execconform/execconform/report"
)

// resultsSchema compiles docs/results.schema.json.
func resultsSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	s, err := schemafile.Compile(filepath.Join("..", "docs", "results.schema.json"))
	require.NoError(t, err)
	return s
}

// validate checks one results file against the schema.
func validate(t *testing.T, s *jsonschema.Schema, f *harness.ResultsFile) error {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, report.WriteJSON(&b, f))
	doc, err := jsonschema.UnmarshalJSON(&b)
	require.NoError(t, err)
	return s.Validate(doc)
}

// TestResultsMatchTheirSchema: results.json, as the suite writes it, is
// what docs/results.schema.json (and docs/reports.md) say; a field the
// schema does not know is refused, so the two cannot drift apart.
func TestResultsMatchTheirSchema(t *testing.T) {
	s := resultsSchema(t)
	f := loadFixture(t)
	require.NoError(t, validate(t, s, f))
	assert.Equal(t, harness.ResultsSchema, f.Schema)

	// An undocumented field, a wrong verdict: both refused.
	var doc map[string]any
	var b bytes.Buffer
	require.NoError(t, report.WriteJSON(&b, f))
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
	doc["results"].([]any)[0].(map[string]any)["undocumented"] = 1
	assert.Error(t, s.Validate(doc), "an undocumented field")
	delete(doc["results"].([]any)[0].(map[string]any), "undocumented")
	doc["results"].([]any)[0].(map[string]any)["verdict"] = "OK"
	assert.Error(t, s.Validate(doc), "an unknown verdict")
}

// TestJUnitReadByAConsumer: a JUnit parser used by CI tools reads the
// file: a test per case in a suite per scenario group, FAIL as a failure,
// ERROR as an error, NON-STRICT and INFO as passed, with the evidence.
func TestJUnitReadByAConsumer(t *testing.T) {
	f := loadFixture(t)
	var b bytes.Buffer
	require.NoError(t, report.WriteJUnit(&b, f, report.Options{HTMLLink: "https://ci.example/artifacts/report.html"}))
	suites, err := junit.Ingest(b.Bytes())
	require.NoError(t, err)

	want := map[harness.Verdict]junit.Status{
		harness.Pass: junit.StatusPassed, harness.NonStrict: junit.StatusPassed, harness.Info: junit.StatusPassed,
		harness.Fail: junit.StatusFailed, harness.Error: junit.StatusError,
	}
	byName := map[string]junit.Test{}
	for _, s := range suites {
		assert.True(t, strings.HasPrefix(s.Name, "execconform."), s.Name)
		for _, tc := range s.Tests {
			byName[tc.Name] = tc
			assert.Equal(t, s.Name, tc.Classname)
		}
	}
	require.Len(t, byName, len(f.Results))
	for _, r := range f.Results {
		tc := byName[r.Name]
		assert.Equal(t, "execconform."+harness.Group(r.Scenario), tc.Classname, r.Name)
		assert.Equal(t, want[r.Verdict], tc.Status, r.Name)
		if !r.Failed() {
			continue
		}
		text := tc.SystemOut
		if tc.Error != nil {
			text = tc.Error.Error()
			first, _, _ := strings.Cut(r.Failures[0], ";")
			assert.Contains(t, tc.Message, first, r.Name)
		}
		for _, ev := range r.Evidence {
			assert.Contains(t, text, ev, r.Name)
		}
		assert.Contains(t, text, "https://ci.example/artifacts/report.html#"+report.CaseID(r.Name), r.Name)
	}
}
