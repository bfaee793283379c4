package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestFormatJSON checks that --format json and inspect print valid protojson
// of the very objects the server returned.
func TestFormatJSON(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)

	services := func(ids ...string) []proto.Message {
		var out []proto.Message
		for _, id := range ids {
			out = append(out, f.services[id])
		}
		return out
	}
	tasks := func() []proto.Message {
		var out []proto.Message
		for _, t := range f.tasks {
			if t.ServiceId == webID {
				out = append(out, t)
			}
		}
		return out
	}
	nodes := func() []proto.Message {
		var out []proto.Message
		for _, id := range []string{node1, node2, node3, node4} {
			out = append(out, f.nodes[id])
		}
		return out
	}
	tests := []struct {
		args []string
		want []proto.Message
		new  func() proto.Message
	}{
		{[]string{"service", "ls", "--format", "json"}, services(dbID, webID), func() proto.Message { return &objectv1.Service{} }},
		{[]string{"service", "inspect", "web"}, services(webID), func() proto.Message { return &objectv1.Service{} }},
		{[]string{"service", "inspect", "db", "web"}, services(dbID, webID), func() proto.Message { return &objectv1.Service{} }},
		{[]string{"service", "ps", "--format", "json", "web"}, tasks(), func() proto.Message { return &objectv1.Task{} }},
		{[]string{"node", "ls", "--format", "json"}, nodes(), func() proto.Message { return &objectv1.Node{} }},
		{[]string{"node", "inspect", "node-1"}, nodes()[:1], func() proto.Message { return &objectv1.Node{} }},
	}
	for _, tt := range tests {
		res := runCLI(host, tt.args...)
		if res.code != 0 {
			t.Errorf("%v: exit %d, stderr %q", tt.args, res.code, res.stderr)
			continue
		}
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil {
			t.Errorf("%v: output is not a JSON array: %v\n%s", tt.args, err, res.stdout)
			continue
		}
		var got []proto.Message
		for _, r := range raw {
			m := tt.new()
			if err := protojson.Unmarshal(r, m); err != nil {
				t.Errorf("%v: element is not protojson: %v\n%s", tt.args, err, r)
			}
			got = append(got, m)
		}
		if !sameMessages(got, tt.want) {
			t.Errorf("%v printed %v, want %v", tt.args, got, tt.want)
		}
		if !strings.Contains(res.stdout, "\n  {\n") {
			t.Errorf("%v: output is not indented:\n%s", tt.args, res.stdout)
		}
	}
}

// sameMessages reports whether a and b hold equal messages, in any order.
func sameMessages(a, b []proto.Message) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
	for _, m := range a {
		i := slices.IndexFunc(b, func(n proto.Message) bool { return proto.Equal(m, n) })
		for i >= 0 && used[i] {
			j := slices.IndexFunc(b[i+1:], func(n proto.Message) bool { return proto.Equal(m, n) })
			if j < 0 {
				i = -1
			} else {
				i += 1 + j
			}
		}
		if i < 0 {
			return false
		}
		used[i] = true
	}
	return true
}

func TestInspectMissing(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "inspect", "nope", "web")
	if res.code != 1 || res.stderr != "Error: service \"nope\": not found\n" {
		t.Errorf("inspect nope web = exit %d, stderr %q; want exit 1 and the missing one", res.code, res.stderr)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil || len(raw) != 1 {
		t.Errorf("inspect nope web printed %q (%v), want an array of the one found", res.stdout, err)
	}
}

func TestFormatFlag(t *testing.T) {
	f := newFakeControl()
	host := f.serve(t)
	res := runCLI(host, "service", "ls", "--format", "yaml")
	if res.code != 1 || !strings.Contains(res.stderr, `"--format" flag: want one of table, json`) || len(f.calls) != 0 {
		t.Errorf("--format yaml = exit %d, stderr %q, calls %v", res.code, res.stderr, f.calls)
	}
}

func TestPrintError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("boom"), "Error: boom\n"},
		{sdk.FromGRPC(sdk.ToGRPC(fmt.Errorf("service %q: %w", "x", sdk.ErrNotFound))), "Error: service \"x\": not found\n"},
		{errors.Join(errors.New("a"), errors.New("b")), "Error: a\nError: b\n"},
		{
			sdk.FromGRPC(sdk.ToGRPC(sdk.FieldErrors{{Field: "spec.task", Message: "required"}, {Field: "spec.x", Message: "bad"}})),
			"Error: invalid argument:\n  spec.task: required\n  spec.x: bad\n",
		},
	}
	for _, tt := range tests {
		var b strings.Builder
		printError(&b, tt.err)
		if b.String() != tt.want {
			t.Errorf("printError(%v) = %q, want %q", tt.err, b.String(), tt.want)
		}
	}
}

func TestHostFlag(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{[]string{"--host", "http://x:1"}, nil, `want "unix:///path" or "tcp://host:port"`},
		{[]string{"--host", "unix://"}, nil, "no socket path"},
		{[]string{"--host", "tcp://nohost"}, nil, "missing port"},
		{[]string{"--host", "tcp://127.0.0.1:1"}, nil, "--tls-cert, --tls-key and --tls-ca are required for tcp://"},
		{nil, map[string]string{"SHOAL_HOST": "tcp://127.0.0.1:1"}, "--tls-cert, --tls-key and --tls-ca are required"},
		{[]string{"--host", "tcp://127.0.0.1:1", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent", "--tls-ca", "/x"}, nil, "--tls-cert/--tls-key"},
		{[]string{"--host", "unix:///nonexistent/shoal.sock"}, nil, "cannot reach unix:///nonexistent/shoal.sock"},
	}
	for _, tt := range tests {
		var out, errOut strings.Builder
		c := newTestCLI()
		c.out, c.errOut = &out, &errOut
		c.getenv = func(k string) string { return tt.env[k] }
		code := c.execute(t.Context(), append(tt.args, "service", "ls"))
		if code != 1 || !strings.Contains(errOut.String(), tt.wantErr) {
			t.Errorf("%v %v service ls = exit %d, stderr %q; want exit 1, %q", tt.env, tt.args, code, errOut.String(), tt.wantErr)
		}
	}
}

// TestDialTLS runs a command against a server on TCP with mutual TLS, as a
// remote manager serves the control API.
func TestDialTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := newCert(t, nil, nil, "shoal-root", true)
	serverCert, serverKey := newCert(t, caCert, caKey, "shoal-manager", false)
	clientCert, clientKey := newCert(t, caCert, caKey, "node-client", false)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caCert.Raw)
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", clientCert.Raw)
	writeKey(t, filepath.Join(dir, "client-key.pem"), clientKey)

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeControl()
	seed(f)
	srv := grpc.NewServer(grpc.Creds(creds))
	controlv1.RegisterControlServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	host := "tcp://" + lis.Addr().String()
	res := runCLI(host, "--tls-cert", filepath.Join(dir, "client.pem"), "--tls-key", filepath.Join(dir, "client-key.pem"),
		"--tls-ca", filepath.Join(dir, "ca.pem"), "service", "ls", "-q")
	if res.code != 0 || res.stdout != dbID+"\n"+webID+"\n" {
		t.Errorf("service ls over mTLS = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	// A CA that did not sign the server's certificate is refused.
	otherCA, _ := newCert(t, nil, nil, "other-root", true)
	writePEM(t, filepath.Join(dir, "other.pem"), "CERTIFICATE", otherCA.Raw)
	res = runCLI(host, "--tls-cert", filepath.Join(dir, "client.pem"), "--tls-key", filepath.Join(dir, "client-key.pem"),
		"--tls-ca", filepath.Join(dir, "other.pem"), "service", "ls")
	if res.code != 1 || !strings.Contains(res.stderr, "certificate") {
		t.Errorf("service ls with the wrong CA = exit %d, stderr %q; want a certificate error", res.code, res.stderr)
	}
}

// newCert makes an ECDSA certificate for cn, signed by parent (self-signed
// when parent is nil).
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}

func TestVersion(t *testing.T) {
	res := runCLI("unix:///unused", "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "shoal "+binaryVersion()+" ") {
		t.Errorf("version = exit %d, stdout %q", res.code, res.stdout)
	}
}
