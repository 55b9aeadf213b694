package execproto

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
)

// Status is the subset of metav1.Status written on the error channel, with
// the same JSON encoding (json.Marshal of a metav1.Status with empty TypeMeta).
type Status struct {
	Metadata struct{}       `json:"metadata"`
	Status   string         `json:"status,omitempty"`
	Message  string         `json:"message,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Details  *StatusDetails `json:"details,omitempty"`
	Code     int32          `json:"code,omitempty"`
}

// StatusDetails is metav1.StatusDetails, as far as exec uses it.
type StatusDetails struct {
	Causes []StatusCause `json:"causes,omitempty"`
}

// StatusCause is metav1.StatusCause.
type StatusCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Values of Status.Status and the exit-code reason and cause, from
// metav1 and remotecommand/constants.go.
const (
	StatusSuccess         = "Success"
	StatusFailure         = "Failure"
	NonZeroExitCodeReason = "NonZeroExitCode"
	ExitCodeCauseType     = "ExitCode"
	InternalErrorReason   = "InternalError"
)

// ExitStatus is the status the server writes when the process ended with code.
func ExitStatus(command []string, code int) Status {
	if code == 0 {
		return Status{Status: StatusSuccess}
	}
	return Status{
		Status:  StatusFailure,
		Reason:  NonZeroExitCodeReason,
		Message: fmt.Sprintf("command terminated with non-zero exit code: error executing command %v, exit code %d", command, code),
		Details: &StatusDetails{Causes: []StatusCause{{Type: ExitCodeCauseType, Message: strconv.Itoa(code)}}},
	}
}

// InternalError is the status for a process that could not run.
func InternalError(err error) Status {
	return Status{
		Status:  StatusFailure,
		Reason:  InternalErrorReason,
		Code:    500,
		Message: fmt.Sprintf("Internal error occurred: error executing command in container: %v", err),
	}
}

// EncodeStatus gives the bytes written on StreamError for s under p: JSON for
// v4 and later; for older protocols the message on failure and nothing (nil)
// on success.
func EncodeStatus(p Protocol, s Status) []byte {
	if p.StatusJSON() {
		b, _ := json.Marshal(s)
		return b
	}
	if s.Status == StatusSuccess {
		return nil
	}
	return []byte(s.Message)
}

// ExitCode extracts the exit code from a status: 0 for Success, the ExitCode
// cause for NonZeroExitCode, and ok=false when the status says neither.
func (s Status) ExitCode() (code int, ok bool) {
	if s.Status == StatusSuccess {
		return 0, true
	}
	if s.Reason != NonZeroExitCodeReason || s.Details == nil {
		return 0, false
	}
	for _, c := range s.Details.Causes {
		if c.Type == ExitCodeCauseType {
			n, err := strconv.Atoi(c.Message)
			return n, err == nil
		}
	}
	return 0, false
}

// ParseStatus reads a status written on StreamError under p. For protocols
// before v4 a message is a failure; when its text ends in "exit code N"
// (the kubelet's wording) the status carries that exit code.
func ParseStatus(p Protocol, b []byte) (Status, error) {
	if p.StatusJSON() {
		var s Status
		if err := json.Unmarshal(b, &s); err != nil {
			return Status{}, fmt.Errorf("execproto: status JSON: %w", err)
		}
		return s, nil
	}
	s := Status{Status: StatusFailure, Message: string(b)}
	if m := exitCodeText.FindStringSubmatch(s.Message); m != nil {
		s.Reason = NonZeroExitCodeReason
		s.Details = &StatusDetails{Causes: []StatusCause{{Type: ExitCodeCauseType, Message: m[1]}}}
	}
	return s, nil
}

var exitCodeText = regexp.MustCompile(`exit code (\d+)$`)
