package dialect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"
)

// The built-in dialects, after the terminals whose front they speak (facts
// from those projects' sources; the paths are ours, for the translating
// reference proxy: a file with "base:" and its own "path:" points one at a
// real terminal).
var builtins = []Dialect{
	{
		Name:        "json-operation",
		Description: `Argo CD's terminal: WebSocket text frames of JSON {"operation": "stdin"|"resize"|"stdout", "data", "rows", "cols"}; always a tty`,
		Path:        "/terminal?namespace={namespace}&pod={pod}&container={container}&shell={shell}",
		Encoding:    JSON,
		Stdin:       Template{"operation": "stdin", "data": "{data}"},
		Resize:      Template{"operation": "resize", "rows": "{rows}", "cols": "{cols}"},
		Output:      &Match{When: map[string]any{"operation": "stdout"}, Data: "data"},
	},
	{
		Name:        "json-op",
		Description: `KubeSphere's terminal: WebSocket text frames of JSON {"Op": "stdin"|"resize"|"stdout", "Data", "Rows", "Cols"}; always a tty`,
		Path:        "/kapis/terminal.kubesphere.io/v1alpha2/namespaces/{namespace}/pods/{pod}/exec?container={container}&shell={shell}",
		Encoding:    JSON,
		Stdin:       Template{"Op": "stdin", "Data": "{data}"},
		Resize:      Template{"Op": "resize", "Rows": "{rows}", "Cols": "{cols}"},
		Output:      &Match{When: map[string]any{"Op": "stdout"}, Data: "Data"},
	},
	{
		Name:        "json-op-sockjs",
		Description: `Kubernetes Dashboard's terminal: GET .../shell/CONTAINER answers {"id"}, then SockJS with a {"Op": "bind", "SessionID"} message, then JSON Op messages; always a tty`,
		Transport:   SockJS,
		Path:        "/api/sockjs",
		Session:     &SessionRequest{Path: "/api/v1/pod/{namespace}/{pod}/shell/{container}?shell={shell}", ID: "id"},
		Start:       []Template{{"Op": "bind", "SessionID": "{session}"}},
		Encoding:    JSON,
		Stdin:       Template{"Op": "stdin", "Data": "{data}", "SessionID": "{session}"},
		Resize:      Template{"Op": "resize", "Rows": "{rows}", "Cols": "{cols}", "SessionID": "{session}"},
		Output:      &Match{When: map[string]any{"Op": "stdout"}, Data: "Data"},
	},
	{
		Name:        "raw",
		Description: "Portainer's terminal: WebSocket text frames of raw bytes both ways, no resize; always a tty",
		Path:        "/api/websocket/pod?namespace={namespace}&podName={pod}&containerName={container}&command={shell}",
		Encoding:    Raw,
	},
	{
		Name:        "raw-binary",
		Description: `raw bytes in binary frames both ways, and a JSON text frame {"resize": {"rows", "cols"}} (as web terminals built on xterm.js's attach addon do); a tty by request`,
		Path:        "/raw?namespace={namespace}&pod={pod}&container={container}&command={command}&tty={tty}",
		Frames:      Binary,
		Encoding:    Raw,
		Resize:      Template{"resize": map[string]any{"rows": "{rows}", "cols": "{cols}"}},
	},
}

func init() {
	for i := range builtins {
		if err := builtins[i].Validate(); err != nil {
			panic(fmt.Sprintf("dialect: built-in %s: %v", builtins[i].Name, err))
		}
	}
}

// Builtins are the built-in dialects' names, Kubernetes first.
func Builtins() []string {
	names := []string{Kubernetes}
	for _, d := range builtins {
		names = append(names, d.Name)
	}
	return names
}

// Builtin is the built-in dialect name (a copy); nil for Kubernetes.
func Builtin(name string) (*Dialect, error) {
	if name == Kubernetes {
		return nil, nil
	}
	for _, d := range builtins {
		if d.Name == name {
			c := d.clone()
			return &c, nil
		}
	}
	return nil, fmt.Errorf("dialect: no built-in dialect %q (built in: %v; or a file's path)", name, Builtins())
}

// All are the built-in dialects but Kubernetes (copies).
func All() []*Dialect {
	var out []*Dialect
	for _, d := range builtins {
		c := d.clone()
		out = append(out, &c)
	}
	return out
}

// Lookup is a built-in dialect's name, or a dialect file's path (Load).
// Kubernetes gives nil.
func Lookup(nameOrFile string) (*Dialect, error) {
	if slices.Contains(Builtins(), nameOrFile) {
		return Builtin(nameOrFile)
	}
	if _, err := os.Stat(nameOrFile); err != nil {
		return nil, fmt.Errorf("dialect: %q is neither a built-in dialect (%v) nor a file: %w", nameOrFile, Builtins(), err)
	}
	return Load(nameOrFile)
}

// Load reads a dialect file (YAML, or JSON, which is YAML too), starting
// from its base if it names one, and validates it. Unknown fields are
// refused with their name.
func Load(path string) (*Dialect, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dialect: %w", err)
	}
	d, err := Parse(b)
	if err != nil {
		var de *Error
		if errors.As(err, &de) {
			de.Source = path
			return nil, de
		}
		return nil, fmt.Errorf("dialect: %s: %w", path, err)
	}
	return d, nil
}

// Parse is Load of a file's contents.
func Parse(b []byte) (*Dialect, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, &Error{Field: "(file)", Reason: err.Error()}
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(js, &file); err != nil {
		return nil, &Error{Field: "(file)", Reason: "a dialect file is one object: " + err.Error()}
	}
	if raw, ok := file["base"]; ok {
		var name string
		_ = json.Unmarshal(raw, &name)
		base, err := Builtin(name)
		if err != nil || base == nil {
			return nil, &Error{Field: "base", Reason: fmt.Sprintf("%q is not a built-in dialect (built in: %v)", name, Builtins()[1:])}
		}
		// The file's fields replace the base's whole (a template is not
		// merged key by key); the file must name itself.
		merged := map[string]json.RawMessage{}
		bb, _ := json.Marshal(base)
		_ = json.Unmarshal(bb, &merged)
		delete(merged, "name")
		for k, v := range file {
			merged[k] = v
		}
		js, _ = json.Marshal(merged)
	}
	var d Dialect
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return nil, &Error{Field: "(file)", Reason: err.Error()}
	}
	d.normalise()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// normalise turns json.Number values of templates back into numbers.
func (d *Dialect) normalise() {
	fix := func(t Template) {
		var walk func(m map[string]any)
		walk = func(m map[string]any) {
			for k, v := range m {
				switch v := v.(type) {
				case json.Number:
					if f, err := v.Float64(); err == nil {
						m[k] = f
					}
				case map[string]any:
					walk(v)
				}
			}
		}
		walk(t)
	}
	for _, t := range d.Start {
		fix(t)
	}
	fix(d.Stdin)
	fix(d.Resize)
	if d.Output != nil {
		fix(d.Output.When)
	}
}

// clone is a deep copy (templates and all).
func (d Dialect) clone() Dialect {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	var c Dialect
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		panic(err)
	}
	c.normalise()
	return c
}
