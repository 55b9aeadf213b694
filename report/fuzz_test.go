package report_test

// A fuzz test of reading results.json back: decoding it into a
// harness.ResultsFile (as the tests, a CI step or a tool reading a
// run's output do) and rendering what was read.
//
//	go test -run '^$' -fuzz FuzzResultsFile -fuzztime 60s -parallel 1 ./report/
//
// Without -fuzz, go test runs the target on its seeds only.

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/execconform/execconform/harness"
	"github.com/execconform/execconform/internal/schemafile"
	"github.com/execconform/execconform/report"
)

// fuzzSchema is docs/results.schema.json, compiled once per process.
var fuzzSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	return schemafile.Compile(filepath.Join("..", "docs", "results.schema.json"))
})

// fuzzSeeds are small results files as the suite writes them (compact,
// so that the fuzzer's mutations and minimisations stay quick): single
// cases of the fixtures (a pass with both legs' traces, a failure with
// live processes, an ERROR, an INFO case without exit), a run of three
// cases of a failing proxy and the file combining a series of two such
// runs; then files that are not results.
func fuzzSeeds(f *testing.F) [][]byte {
	read := func(name string) harness.ResultsFile {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		var rf harness.ResultsFile
		if err := json.Unmarshal(b, &rf); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		return rf
	}
	fixture, noExit := read("fixture.json"), read("fixture-noexit.json")
	with := func(rf harness.ResultsFile, results ...harness.Result) harness.ResultsFile {
		rf.Results = results
		rep := rf.Report()
		rf.Summary, rf.ExitCode, rf.Notices, rf.Interrupted = rep.Counts(), rep.ExitCode(), harness.Notices(results), rep.Interrupted()
		return rf
	}
	var files []harness.ResultsFile
	for _, v := range []harness.Verdict{harness.Pass, harness.Fail, harness.Error, harness.Info} {
		for _, r := range fixture.Results {
			if r.Verdict == v {
				files = append(files, with(fixture, r))
				break
			}
		}
	}
	small := with(noExit, noExit.Results[:3]...)
	second := with(small, append([]harness.Result(nil), small.Results...)...)
	second.Results[0].Verdict = harness.Pass
	second = with(second, second.Results...)
	second.Started = small.Started.Add(time.Minute)
	s := harness.NewSeries(2)
	for _, run := range []harness.ResultsFile{small, second} {
		if _, err := s.Add(run); err != nil {
			f.Fatal(err)
		}
	}
	files = append(files, small, s.File())
	var out [][]byte
	for _, rf := range files {
		b, err := json.Marshal(rf)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte(`{}`), []byte(`null`), []byte(`{"results":[{"live":[{"pid":1,"state":"SS"}]}]}`),
		[]byte(`{"results":[{"legs":{"client":null}}],"summary":{"MUST":{"FAIL":-1}}}`),
		[]byte(`{"started":"2026-01-01T00:00:00+25:00"}`), []byte(`{"schema":"execconform/results/v3","results":[`))
}

// FuzzResultsFile: on any bytes, decoding a results file does not panic;
// what decodes writes back (WriteJSON) to a file that decodes to the same
// bytes again; and a file that docs/results.schema.json accepts decodes,
// and every report renders from it (JUnit, HTML, Markdown, the one-line
// summaries, the normalised form) without a panic or an error.
func FuzzResultsFile(f *testing.F) {
	schema, err := fuzzSchema()
	if err != nil {
		f.Fatal(err)
	}
	valid := func(b []byte) bool {
		return schemafile.Validate(schema, b) == nil
	}
	seeds := fuzzSeeds(f)
	for i, b := range seeds {
		if i < 6 && !valid(b) {
			f.Fatalf("seed %d is not a valid results file: the renderers would not be fuzzed", i)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rf harness.ResultsFile
		decodeErr := json.Unmarshal(b, &rf)

		valid := valid(b)
		if decodeErr != nil {
			if valid {
				t.Fatalf("a file the schema accepts does not decode: %v", decodeErr)
			}
			return
		}

		var once bytes.Buffer
		if err := report.WriteJSON(&once, &rf); err != nil {
			t.Fatalf("decoded, but does not write back: %v", err)
		}
		var again harness.ResultsFile
		if err := json.Unmarshal(once.Bytes(), &again); err != nil {
			t.Fatalf("written back, but does not decode: %v\n%s", err, once.Bytes())
		}
		var twice bytes.Buffer
		if err := report.WriteJSON(&twice, &again); err != nil {
			t.Fatalf("second write: %v", err)
		}
		if !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("not a fixed point:\n%s\nthen\n%s", once.Bytes(), twice.Bytes())
		}

		if !valid {
			return
		}
		o := report.Options{HTMLLink: "https://ci.example/report.html", MaxBytes: 16 << 10}
		for name, write := range map[string]func(io.Writer) error{
			"JUnit":    func(w io.Writer) error { return report.WriteJUnit(w, &rf, o) },
			"HTML":     func(w io.Writer) error { return report.WriteHTML(w, &rf) },
			"Markdown": func(w io.Writer) error { return report.WriteMarkdown(w, &rf, o) },
		} {
			if err := write(io.Discard); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		_ = report.Headline(&rf)
		_ = report.Counts(&rf)
		_ = report.SeriesLine(&rf, 3)
		_ = report.NotPassed(&rf)
		_ = rf.Report().ExitCode()
		report.Normalize(&again)
	})
}
