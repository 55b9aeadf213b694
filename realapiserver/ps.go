package realapiserver

import (
	"context"
	"fmt"
	"strings"

	"github.com/execconform/execconform/execclient"
	"github.com/execconform/execconform/execproto"
)

// PS runs ps aux inside the pod through a fresh exec, straight to the API
// server, and returns its output.
func (c Cluster) PS(ctx context.Context) (string, error) {
	tlsc, err := c.TLSConfig()
	if err != nil {
		return "", err
	}
	conn, err := execclient.Dial(ctx, c.ExecURL([]string{"ps", "aux"}, false, false), execclient.Options{
		Protocols: []execproto.Protocol{execproto.ProtocolV5, execproto.ProtocolV4},
		Header:    map[string][]string{"Authorization": {"Bearer " + c.Token}},
		TLSConfig: tlsc,
	})
	if err != nil {
		return "", fmt.Errorf("realapiserver: exec ps aux in the pod: %w", err)
	}
	defer func() { _ = conn.Reset() }()
	select {
	case <-conn.Done():
	case <-ctx.Done():
		return "", fmt.Errorf("realapiserver: ps aux in the pod did not end: %w", ctx.Err())
	}
	st, ok, err := conn.Status(ctx)
	if err != nil || (ok && st.Status != "Success") {
		return conn.Output(), fmt.Errorf("realapiserver: ps aux in the pod failed: %+v %v", st, err)
	}
	return conn.Output(), nil
}

// MarkedShells picks from ps aux output the lines of shells marked with
// tag (every marked shell if tag is "").
func MarkedShells(ps, tag string) []string {
	var out []string
	for line := range strings.Lines(ps) {
		for _, f := range strings.Fields(line) {
			if t, ok := strings.CutPrefix(f, MarkerPrefix); ok && (tag == "" || t == tag) {
				out = append(out, strings.TrimSpace(line))
				break
			}
		}
	}
	return out
}

// PodShells lists the shells marked with tag (all marked shells if tag is
// "") that ps aux inside the pod shows.
func (s *Server) PodShells(ctx context.Context, tag string) ([]string, error) {
	ps, err := s.cl.PS(ctx)
	if err != nil {
		return nil, err
	}
	return MarkedShells(ps, tag), nil
}
