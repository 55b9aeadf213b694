// Command mkimage packs the two images of the end-to-end cluster, a busybox
// image (from a static busybox binary, one symlink per applet) and a pause
// image (from the pause program of this module), into one OCI image layout
// tar that `ctr -n k8s.io images import FILE` loads under the given names.
//
// Layers are uncompressed and every tar header is fixed (owner, time), so the
// same inputs give the same digests.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// requiredApplets must exist in the busybox binary: the conformance suite's
// commands use them.
var requiredApplets = []string{
	"sh", "ps", "env", "sleep", "cat", "grep", "kill", "echo", "ls", "stty",
	"tr", "wc", "head", "true", "false", "printf", "test", "id", "tail", "od",
}

var epoch = time.Unix(0, 0).UTC()

type file struct {
	name     string // path inside the image, no leading slash
	mode     int64
	typ      byte // tar.TypeReg, tar.TypeDir, tar.TypeSymlink
	data     []byte
	linkname string
}

type image struct {
	name       string
	files      []file
	entrypoint []string
	cmd        []string
	env        []string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

func main() {
	out := flag.String("out", "", "output tar (OCI image layout)")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox binary")
	busyboxName := flag.String("busybox-name", "localhost/execconform/busybox:e2e", "busybox image reference")
	pause := flag.String("pause", "", "static pause binary")
	pauseName := flag.String("pause-name", "localhost/execconform/pause:e2e", "pause image reference")
	flag.Parse()
	if *out == "" || *pause == "" {
		fatalf("usage: mkimage -out FILE.tar -pause PAUSE [-busybox /bin/busybox] [-busybox-name REF] [-pause-name REF]")
	}
	bb, err := busyboxImage(*busybox, *busyboxName)
	if err != nil {
		fatalf("%v", err)
	}
	pa, err := pauseImage(*pause, *pauseName)
	if err != nil {
		fatalf("%v", err)
	}
	if err := writeLayout(*out, []image{bb, pa}); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mkimage: "+format+"\n", args...)
	os.Exit(1)
}

// checkStatic fails when path is not a statically linked ELF executable: a
// dynamic one would not run in an image without its libraries.
func checkStatic(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not an ELF executable: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s is dynamically linked; a static binary is needed (Debian package busybox-static)", path)
		}
	}
	return data, nil
}

func busyboxImage(path, name string) (image, error) {
	data, err := checkStatic(path)
	if err != nil {
		return image{}, err
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return image{}, fmt.Errorf("%s --list: %v", path, err)
	}
	applets := map[string]bool{}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets[a] = true
		}
	}
	var missing []string
	for _, a := range requiredApplets {
		if !applets[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return image{}, fmt.Errorf("%s lacks applets %v", path, missing)
	}
	files := []file{
		{name: "bin", mode: 0o755, typ: tar.TypeDir},
		{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, data: data},
		{name: "dev", mode: 0o755, typ: tar.TypeDir},
		{name: "etc", mode: 0o755, typ: tar.TypeDir},
		{name: "etc/group", mode: 0o644, typ: tar.TypeReg, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{name: "etc/passwd", mode: 0o644, typ: tar.TypeReg, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{name: "proc", mode: 0o555, typ: tar.TypeDir},
		{name: "root", mode: 0o700, typ: tar.TypeDir},
		{name: "sbin", typ: tar.TypeSymlink, linkname: "bin"},
		{name: "sys", mode: 0o555, typ: tar.TypeDir},
		{name: "tmp", mode: 0o1777, typ: tar.TypeDir},
		{name: "usr", mode: 0o755, typ: tar.TypeDir},
		{name: "usr/bin", typ: tar.TypeSymlink, linkname: "../bin"},
		{name: "usr/sbin", typ: tar.TypeSymlink, linkname: "../bin"},
		{name: "var", mode: 0o755, typ: tar.TypeDir},
		{name: "var/tmp", mode: 0o1777, typ: tar.TypeDir},
	}
	names := make([]string, 0, len(applets))
	for a := range applets {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		files = append(files, file{name: "bin/" + a, typ: tar.TypeSymlink, linkname: "busybox"})
	}
	return image{
		name:  name,
		files: files,
		cmd:   []string{"sh"},
		env:   []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"},
	}, nil
}

func pauseImage(path, name string) (image, error) {
	data, err := checkStatic(path)
	if err != nil {
		return image{}, err
	}
	return image{
		name:       name,
		files:      []file{{name: "pause", mode: 0o755, typ: tar.TypeReg, data: data}},
		entrypoint: []string{"/pause"},
		env:        []string{"PATH=/"},
	}, nil
}

func layerTar(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Typeflag: f.typ,
			Name:     f.name,
			Linkname: f.linkname,
			Mode:     f.mode,
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		switch f.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Mode = 0o777
		case tar.TypeReg:
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if f.typ == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// layout collects the blobs of an OCI image layout.
type layout struct {
	blobs map[string][]byte
}

func (l *layout) add(b []byte) string {
	d := digest(b)
	l.blobs[d] = b
	return d
}

func writeLayout(out string, images []image) error {
	l := &layout{blobs: map[string][]byte{}}
	index := struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json"}
	plat := &platform{Architecture: runtime.GOARCH, OS: "linux"}
	for _, im := range images {
		layer, err := layerTar(im.files)
		if err != nil {
			return err
		}
		layerDigest := l.add(layer)
		cfg := map[string]any{
			"architecture": plat.Architecture,
			"os":           plat.OS,
			"created":      epoch.Format(time.RFC3339),
			"config": map[string]any{
				"Env":        im.env,
				"Entrypoint": im.entrypoint,
				"Cmd":        im.cmd,
				"WorkingDir": "/",
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
			"history": []map[string]any{{
				"created":    epoch.Format(time.RFC3339),
				"created_by": "execconform e2e/tools/images/cmd/mkimage",
			}},
		}
		cfgJSON, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		cfgDigest := l.add(cfgJSON)
		manifest := map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config": descriptor{
				MediaType: "application/vnd.oci.image.config.v1+json",
				Digest:    cfgDigest, Size: int64(len(cfgJSON)),
			},
			"layers": []descriptor{{
				MediaType: "application/vnd.oci.image.layer.v1.tar",
				Digest:    layerDigest, Size: int64(len(layer)),
			}},
		}
		manJSON, err := json.Marshal(manifest)
		if err != nil {
			return err
		}
		tag := im.name
		if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
			tag = tag[i+1:]
		}
		index.Manifests = append(index.Manifests, descriptor{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    l.add(manJSON),
			Size:      int64(len(manJSON)),
			Platform:  plat,
			Annotations: map[string]string{
				"io.containerd.image.name":          im.name,
				"org.opencontainers.image.ref.name": tag,
			},
		})
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	put := func(name string, data []byte) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	digests := make([]string, 0, len(l.blobs))
	for d := range l.blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := put(filepath.Join("blobs/sha256", strings.TrimPrefix(d, "sha256:")), l.blobs[d]); err != nil {
			return err
		}
	}
	if err := put("index.json", indexJSON); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
