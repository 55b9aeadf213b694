// Package schemafile compiles the JSON schemas of docs/ (results,
// census, bench reports), for the tests that check what the suite writes
// against what its documentation promises.
package schemafile

import (
	"bytes"
	"os"
	"path/filepath"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Compile compiles the schema file at path, under the ID the file's $id
// gives it (https://github.com/execconform/execconform/docs/NAME), with
// formats asserted (a "date-time" must be one).
func Compile(path string) (*jsonschema.Schema, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	doc, err := jsonschema.UnmarshalJSON(fh)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	id := "https://github.com/execconform/execconform/docs/" + filepath.Base(path)
	if err := c.AddResource(id, doc); err != nil {
		return nil, err
	}
	return c.Compile(id)
}

// Validate checks the JSON document b against s.
func Validate(s *jsonschema.Schema, b []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return s.Validate(v)
}
