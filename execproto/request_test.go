package execproto_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/execconform/execconform/execproto"
)

// The exec request as kubectl sends it: the pod's path, command once per
// word in order, every stream flag spelt out.
func TestExecRequest(t *testing.T) {
	r := execproto.ExecRequest{Namespace: "ns", Pod: "web", Container: "c0", Command: []string{"sh", "-i"}, Stdin: true, Stdout: true, TTY: true}
	assert.Equal(t, "/api/v1/namespaces/ns/pods/web/exec", r.Path())
	assert.Equal(t, "command=sh&command=-i&container=c0&stderr=false&stdin=true&stdout=true&tty=true", r.Query().Encode())
}
