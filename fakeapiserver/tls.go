package fakeapiserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// authority is an ephemeral certificate authority and the serving
// certificate it signed for the loopback names.
type authority struct {
	pool   *x509.CertPool
	caPEM  []byte
	caFile string
	cert   tls.Certificate
}

// LoopbackTLS is an ephemeral certificate authority, in memory only, and
// a serving certificate it signed for 127.0.0.1, ::1 and localhost: for a
// test's own https listener on loopback (an in-process proxy's front).
type LoopbackTLS struct {
	CAPEM  []byte      // the CA, PEM
	Server *tls.Config // serves the certificate
	Client *tls.Config // trusts the CA
}

// NewLoopbackTLS makes a LoopbackTLS (valid for a day).
func NewLoopbackTLS() (*LoopbackTLS, error) {
	a, err := makeAuthority("", false)
	if err != nil {
		return nil, err
	}
	return &LoopbackTLS{
		CAPEM:  a.caPEM,
		Server: &tls.Config{Certificates: []tls.Certificate{a.cert}, MinVersion: tls.VersionTLS12},
		Client: &tls.Config{RootCAs: a.pool, MinVersion: tls.VersionTLS12},
	}, nil
}

// newAuthority makes a CA and a serving certificate for 127.0.0.1, ::1 and
// localhost, valid for a day, and writes the CA to dir/ca.crt.
func newAuthority(dir string) (*authority, error) {
	return makeAuthority(dir, false)
}

// makeAuthority is newAuthority; with keep it reuses dir/ca.crt and
// dir/ca.key when both are there, and writes the key beside the CA when it
// makes one, so that a proxy configured to trust the CA keeps trusting it
// across runs.
func makeAuthority(dir string, keep bool) (*authority, error) {
	now := time.Now()
	var caCert *x509.Certificate
	var caDER []byte
	var caKey *ecdsa.PrivateKey
	err := errors.New("no directory")
	if dir != "" {
		caCert, caDER, caKey, err = loadCA(dir)
	}
	if !keep || err != nil {
		if caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "execconform fake API server CA"},
			NotBefore:             now.Add(-time.Minute),
			NotAfter:              now.Add(365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		if caDER, err = x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey); err != nil {
			return nil, err
		}
		if caCert, err = x509.ParseCertificate(caDER); err != nil {
			return nil, err
		}
		if keep {
			kb, err := x509.MarshalECPrivateKey(caKey)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
				return nil, fmt.Errorf("fakeapiserver: write CA key: %w", err)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	a := &authority{
		pool:  x509.NewCertPool(),
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
	a.pool.AddCert(caCert)
	if dir == "" {
		return a, nil // in memory only (NewLoopbackTLS)
	}
	a.caFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(a.caFile, a.caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("fakeapiserver: write CA: %w", err)
	}
	return a, nil
}

// loadCA reads dir/ca.crt and dir/ca.key.
func loadCA(dir string) (*x509.Certificate, []byte, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, nil, err
	}
	kb, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, nil, fmt.Errorf("fakeapiserver: %s: no PEM CA certificate and key", dir)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, nil, err
	}
	if time.Now().After(cert.NotAfter) {
		return nil, nil, nil, fmt.Errorf("fakeapiserver: %s/ca.crt expired", dir)
	}
	return cert, cblock.Bytes, key, nil
}

// LoopbackCert makes an ephemeral CA and a serving certificate it signed
// for 127.0.0.1, ::1 and localhost, as the fake server serves with, for
// other loopback servers of the suite (a recording relay). It writes the
// CA to dir/ca.crt and returns that file's path and a pool that trusts it.
func LoopbackCert(dir string) (cert tls.Certificate, pool *x509.CertPool, caFile string, err error) {
	a, err := newAuthority(dir)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	return a.cert, a.pool, a.caFile, nil
}
