package onair_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// No container engine runs on our machines, so this test runs the build
// stage of the Dockerfile as plain commands: the same RUN lines, with
// /src and /out mapped to temporary folders. It proves the cgo build links
// statically (the runtime image has no libc) and that the binary runs.
func TestDockerfileBuildSteps(t *testing.T) {
	steps, workdir := buildStage(t, "Dockerfile")
	if workdir != "/src" {
		t.Fatalf("build stage WORKDIR: got %q, want /src", workdir)
	}
	src, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, step := range steps {
		cmd := strings.ReplaceAll(step, "/out/", out+"/")
		cmd = strings.ReplaceAll(cmd, "${VERSION}", "devel")
		t.Logf("RUN %s", cmd)
		c := exec.Command("sh", "-c", cmd)
		c.Dir = src
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", cmd, err, b)
		}
	}
	bin := filepath.Join(out, "onair")
	// A static binary has no program interpreter (no PT_INTERP): ldd says so.
	if b, _ := exec.Command("ldd", bin).CombinedOutput(); !strings.Contains(string(b), "not a dynamic executable") &&
		!strings.Contains(string(b), "statically linked") {
		t.Fatalf("onair is not statically linked:\n%s", b)
	}
	if fi, err := os.Stat(filepath.Join(out, "data")); err != nil || !fi.IsDir() {
		t.Fatalf("the build stage must create /out/data for the volume: %v", err)
	}
	b, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(b), "onair ") {
		t.Fatalf("onair version: %v %s", err, b)
	}
	runtimeStage(t, "Dockerfile")
}

// buildStage returns the RUN commands of the first stage and its WORKDIR.
func buildStage(t *testing.T, path string) (runs []string, workdir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM "):
			stages++
		case stages != 1:
		case strings.HasPrefix(line, "WORKDIR "):
			workdir = strings.TrimPrefix(line, "WORKDIR ")
		case strings.HasPrefix(line, "RUN "):
			runs = append(runs, strings.TrimPrefix(line, "RUN "))
		}
	}
	if len(runs) == 0 {
		t.Fatal("no RUN steps in the build stage")
	}
	return runs, workdir
}

// runtimeStage checks what the runtime stage promises: non-root, a volume
// for the database, and a HEALTHCHECK.
func runtimeStage(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	last := s[strings.LastIndex(s, "\nFROM "):]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^USER 65532`),
		regexp.MustCompile(`(?m)^VOLUME /data`),
		regexp.MustCompile(`ONAIR_DB=/data/`),
		regexp.MustCompile(`(?m)^HEALTHCHECK .*\n?.*healthcheck`),
	} {
		if !want.MatchString(last) {
			t.Errorf("runtime stage lacks %s", want)
		}
	}
}
