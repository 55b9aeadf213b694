package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// tokenFrom is the bearer token given by a token flag (value token,
// named tokenFlag) or a token-file flag (path file, named fileFlag): the
// file's content without surrounding whitespace, which keeps the token out
// of ps. Both, or an empty file, is an error; neither is "" (a random
// token). An error never holds the file's content.
func tokenFrom(token, tokenFlag, file, fileFlag string) (string, error) {
	if file == "" {
		return token, nil
	}
	if token != "" {
		return "", fmt.Errorf("--%s and --%s: choose one", tokenFlag, fileFlag)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", fileFlag, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--%s %s: the file holds no token", fileFlag, file)
	}
	return t, nil
}

// warnNotLoopback warns on stderr when addr, the listen address of the
// fake API server given by --flag, is not on loopback: anyone who reaches
// it with the token runs real shells as this user. Only an IP literal of
// loopback and "localhost" count as loopback; an empty host is every
// interface.
func warnNotLoopback(stderr io.Writer, flag, addr string) {
	warnOffLoopback(stderr, flag, addr, "whoever reaches it with the token runs real shells as this user")
}

// warnOffLoopback is warnNotLoopback for any listener, risk saying what
// the network gets.
func warnOffLoopback(stderr io.Writer, flag, addr, risk string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return // the listen fails and says why
	}
	if host == "localhost" {
		return
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return
	}
	where := host
	if host == "" || net.ParseIP(host).IsUnspecified() {
		where = "every interface"
	}
	fmt.Fprintf(stderr, "execconform: warning: --%s %s listens on %s, not on loopback: %s\n", flag, addr, where, risk)
}
