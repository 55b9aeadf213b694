package execproto

import (
	"net/url"
	"strconv"
)

// ExecRequest is what an exec request asks for: the pod's exec path and
// the query the API server reads (as kubectl exec sends it).
type ExecRequest struct {
	Namespace, Pod, Container string
	Command                   []string
	Stdin, Stdout, Stderr     bool
	TTY                       bool
}

// Path is the pod's exec path, /api/v1/namespaces/NS/pods/POD/exec.
func (e ExecRequest) Path() string {
	return "/api/v1/namespaces/" + e.Namespace + "/pods/" + e.Pod + "/exec"
}

// Query is the request's query: command once per word, container, and
// stdin, stdout, stderr and tty as true or false.
func (e ExecRequest) Query() url.Values {
	q := url.Values{}
	for _, a := range e.Command {
		q.Add("command", a)
	}
	q.Set("container", e.Container)
	q.Set("stdin", strconv.FormatBool(e.Stdin))
	q.Set("stdout", strconv.FormatBool(e.Stdout))
	q.Set("stderr", strconv.FormatBool(e.Stderr))
	q.Set("tty", strconv.FormatBool(e.TTY))
	return q
}
