// Command e2ectl is the helper of scripts/e2e-local.sh that needs more than
// bash: it writes the cluster's certificates, waits for components with
// deadlines (polling at short intervals, never sleeping a fixed time), and
// checks that an exec through the API server really works, with a minimal
// WebSocket client (the v5/v4.channel.k8s.io exec protocol).
//
//	e2ectl certs -dir DIR -ip IP[,IP...] [-dns NAME[,NAME...]]
//	e2ectl wait-http -url URL [-timeout D]
//	e2ectl wait-apiserver -server URL -ca FILE -token T [-namespace-only] [-timeout D]
//	e2ectl exec -server URL -ca FILE -token T -namespace NS -pod P -container C [-expect S] [-timeout D] -- CMD...
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: e2ectl certs|wait-http|wait-apiserver|exec [flags]")
	}
	var err error
	switch os.Args[1] {
	case "certs":
		err = certs(os.Args[2:])
	case "wait-http":
		err = waitHTTP(os.Args[2:])
	case "wait-apiserver":
		err = waitAPIServer(os.Args[2:])
	case "exec":
		err = execCheck(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fatalf("%s: %v", os.Args[1], err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2ectl: "+format+"\n", args...)
	os.Exit(1)
}

// poll calls f every interval until it returns nil or the deadline passes;
// the error then names the last failure.
func poll(timeout, interval time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().Add(interval).After(deadline) {
			return fmt.Errorf("%s: not ready after %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// ---- certs ----

func certs(args []string) error {
	fs := flag.NewFlagSet("certs", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory")
	ips := fs.String("ip", "", "comma-separated IP SANs of the API server")
	dns := fs.String("dns", "localhost,kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.cluster.local", "comma-separated DNS SANs")
	days := fs.Int("days", 30, "validity")
	fs.Parse(args)
	if *dir == "" || *ips == "" {
		return errors.New("-dir and -ip are required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	notBefore := time.Now().Add(-time.Hour)
	notAfter := time.Now().Add(time.Duration(*days) * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "execconform-e2e-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range strings.Split(*ips, ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return fmt.Errorf("bad IP %q", s)
		}
		srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
	}
	for _, s := range strings.Split(*dns, ",") {
		if s = strings.TrimSpace(s); s != "" {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, s)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}

	for _, f := range []struct {
		name, typ string
		der       []byte
		key       *ecdsa.PrivateKey
	}{
		{"ca.crt", "CERTIFICATE", caDER, nil},
		{"ca.key", "", nil, caKey},
		{"apiserver.crt", "CERTIFICATE", srvDER, nil},
		{"apiserver.key", "", nil, srvKey},
		{"sa.key", "", nil, saKey},
		{"sa.pub", "PUBLIC KEY", saPub, nil},
	} {
		typ, der := f.typ, f.der
		if f.key != nil {
			typ = "EC PRIVATE KEY"
			if der, err = x509.MarshalECPrivateKey(f.key); err != nil {
				return err
			}
		}
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		if err := os.WriteFile(filepath.Join(*dir, f.name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

// ---- waits ----

func waitHTTP(args []string) error {
	fs := flag.NewFlagSet("wait-http", flag.ExitOnError)
	u := fs.String("url", "", "URL that must answer 200")
	timeout := fs.Duration("timeout", 30*time.Second, "overall deadline")
	fs.Parse(args)
	c := &http.Client{Timeout: 2 * time.Second}
	return poll(*timeout, 50*time.Millisecond, *u, func() error {
		resp, err := c.Get(*u)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil
	})
}

type apiFlags struct {
	server, ca, token string
	timeout           time.Duration
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", "", "API server URL")
	fs.StringVar(&a.ca, "ca", "", "PEM file of the API server's CA")
	fs.StringVar(&a.token, "token", "", "bearer token")
	fs.DurationVar(&a.timeout, "timeout", 60*time.Second, "overall deadline")
}

func (a *apiFlags) tlsConfig() (*tls.Config, error) {
	pemData, err := os.ReadFile(a.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s: no certificate", a.ca)
	}
	return &tls.Config{RootCAs: pool}, nil
}

func (a *apiFlags) client() (*http.Client, error) {
	tc, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}, nil
}

func (a *apiFlags) do(c *http.Client, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.server+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, data, nil
}

// waitAPIServer waits for the default namespace and /readyz, then creates
// what kube-controller-manager (which this cluster does not run) would: the
// default ServiceAccount and the kube-root-ca.crt ConfigMap of the default
// namespace, so that pods created through the API can start too.
func waitAPIServer(args []string) error {
	var a apiFlags
	fs := flag.NewFlagSet("wait-apiserver", flag.ExitOnError)
	a.register(fs)
	nsOnly := fs.Bool("namespace-only", false, "only wait until the default namespace exists (kube-apiserver serves system:masters before /readyz)")
	fs.Parse(args)
	c, err := a.client()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(a.ca)
	if err != nil {
		return err
	}
	get := func(path string) func() error {
		return func() error {
			code, body, err := a.do(c, "GET", path, nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("GET %s: HTTP %d: %s", path, code, truncate(body))
			}
			return nil
		}
	}
	deadline := time.Now().Add(a.timeout)
	left := func() time.Duration { return time.Until(deadline) }
	if err := poll(left(), 100*time.Millisecond, "namespace default", get("/api/v1/namespaces/default")); err != nil {
		return err
	}
	if *nsOnly {
		return nil
	}
	if err := poll(left(), 100*time.Millisecond, "kube-apiserver /readyz", get("/readyz")); err != nil {
		return err
	}
	create := func(path string, obj any) func() error {
		return func() error {
			code, body, err := a.do(c, "POST", path, obj)
			if err != nil {
				return err
			}
			if code != http.StatusCreated && code != http.StatusConflict {
				return fmt.Errorf("POST %s: HTTP %d: %s", path, code, truncate(body))
			}
			return nil
		}
	}
	if err := poll(left(), 100*time.Millisecond, "default ServiceAccount", create("/api/v1/namespaces/default/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": "default"},
	})); err != nil {
		return err
	}
	return poll(left(), 100*time.Millisecond, "kube-root-ca.crt ConfigMap", create("/api/v1/namespaces/default/configmaps", map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "kube-root-ca.crt"},
		"data": map[string]string{"ca.crt": string(caPEM)},
	}))
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// ---- exec over WebSocket ----

func execCheck(args []string) error {
	var a apiFlags
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	a.register(fs)
	ns := fs.String("namespace", "default", "pod namespace")
	pod := fs.String("pod", "", "pod name")
	container := fs.String("container", "", "container name")
	expect := fs.String("expect", "", "stdout must contain this")
	quiet := fs.Bool("q", false, "do not print the command's output")
	fs.Parse(args)
	cmd := fs.Args()
	if *pod == "" || len(cmd) == 0 {
		return errors.New("-pod and a command are required")
	}
	tc, err := a.tlsConfig()
	if err != nil {
		return err
	}
	u, err := url.Parse(a.server)
	if err != nil {
		return err
	}
	q := url.Values{}
	for _, c := range cmd {
		q.Add("command", c)
	}
	if *container != "" {
		q.Set("container", *container)
	}
	q.Set("stdout", "true")
	q.Set("stderr", "true")
	path := fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/exec?%s", url.PathEscape(*ns), url.PathEscape(*pod), q.Encode())
	var stdout, stderr []byte
	err = poll(a.timeout, 200*time.Millisecond, "exec in pod "+*ns+"/"+*pod, func() error {
		var err error
		stdout, stderr, err = wsExec(u.Host, path, a.token, tc)
		if err != nil {
			return err
		}
		if !strings.Contains(string(stdout), *expect) {
			return fmt.Errorf("stdout %q lacks %q (stderr %q)", stdout, *expect, stderr)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !*quiet {
		os.Stdout.Write(stdout)
		os.Stderr.Write(stderr)
	}
	return nil
}

// wsExec runs one exec and returns its output once the server sent the
// command's status (channel 3) and closed the stream.
func wsExec(host, path, token string, tc *tls.Config) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: tc, NetDialer: &net.Dialer{}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	keyRaw := make([]byte, 16)
	rand.Read(keyRaw)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io\r\n\r\n",
		path, host, token, base64.StdEncoding.EncodeToString(keyRaw))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, truncate(body))
	}
	var status []byte
	var msg []byte
	for {
		op, fin, payload, err := readFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) && status != nil {
				break
			}
			return stdout, stderr, fmt.Errorf("reading stream: %v", err)
		}
		if op == 8 { // close
			break
		}
		if op == 9 || op == 10 { // ping, pong
			continue
		}
		msg = append(msg, payload...)
		if !fin {
			continue
		}
		if len(msg) > 0 {
			switch msg[0] {
			case 1:
				stdout = append(stdout, msg[1:]...)
			case 2:
				stderr = append(stderr, msg[1:]...)
			case 3:
				status = append(status, msg[1:]...)
			}
		}
		msg = nil
	}
	if len(status) == 0 {
		return stdout, stderr, errors.New("stream ended without a status")
	}
	var st struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return stdout, stderr, fmt.Errorf("bad status %q: %v", status, err)
	}
	if st.Status != "Success" {
		return stdout, stderr, fmt.Errorf("exec status %s: %s", st.Status, st.Message)
	}
	return stdout, stderr, nil
}

func readFrame(r *bufio.Reader) (op byte, fin bool, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	fin = h[0]&0x80 != 0
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return
		}
	}
	if n > 16<<20 {
		err = fmt.Errorf("frame of %d bytes", n)
		return
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return
}
