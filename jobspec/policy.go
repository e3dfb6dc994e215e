package jobspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// Policy is the coordinator's check of the inside of a job (coordinator.JobPolicy):
// cmd/ringtrain builds one from the coordinator's --max-params,
// --max-activation-bytes and --data-root flags.
//
// Check is pure and the same on every replica whatever its flags, so that the state
// machine may run it in Apply and Restore: the spec decodes, agrees with the job,
// passes trainer.Spec.CheckSubmitted against model.HardLimits (finite
// hyperparameters, sizes that do not overflow), and its paths are syntactically
// sound. Admit is the leader's check before it proposes a job: Check, the configured
// Limits, and the paths confined under DataRoot, relative ones resolved there.
type Policy struct {
	// Limits bound the model's parameters and activations; zero fields take
	// model.DefaultLimits'.
	Limits model.Limits
	// DataRoot, when set, is the directory every path of a job (data, out,
	// init_from, a tokenizer file) must lie under: relative paths are resolved under
	// it, and a path that leaves it through ".." or a symbolic link is refused.
	// Empty: paths are not confined (one-process clusters, tests).
	DataRoot string
}

// ErrPathEscape reports a job path that leaves the data root; it comes wrapped
// with coordinator.ErrBadCommand.
var ErrPathEscape = errors.New("jobspec: path outside the data root")

// maxPathLen bounds each path of a job.
const maxPathLen = 4096

// Check decodes the spec job carries and checks it without reading anything but
// job: see Policy. Errors wrap coordinator.ErrBadCommand and name the field.
func Check(job *pb.JobSpec) error {
	_, err := checked(job, model.HardLimits)
	return err
}

func checked(job *pb.JobSpec, lim model.Limits) (trainer.Spec, error) {
	spec, err := Decode(job)
	if err != nil {
		return spec, err
	}
	if err := spec.CheckSubmitted(lim); err != nil {
		return spec, fmt.Errorf("%w: %w", coordinator.ErrBadCommand, err)
	}
	for _, p := range pathsOf(&spec) {
		if err := checkPathSyntax(p.field, *p.v); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// Check implements coordinator.JobPolicy with the package's Check.
func (Policy) Check(job *pb.JobSpec) error { return Check(job) }

// Admit checks job as Check does, against p.Limits, and confines its paths under
// p.DataRoot. It returns the job to propose: job itself when nothing changed, else a
// copy whose spec has every relative path resolved under the data root.
func (p Policy) Admit(job *pb.JobSpec) (*pb.JobSpec, error) {
	lim := p.Limits
	if lim.MaxParams <= 0 {
		lim.MaxParams = model.DefaultLimits.MaxParams
	}
	if lim.MaxActivationBytes <= 0 {
		lim.MaxActivationBytes = model.DefaultLimits.MaxActivationBytes
	}
	spec, err := checked(job, lim)
	if err != nil {
		return nil, err
	}
	if p.DataRoot == "" {
		return job, nil
	}
	root, err := resolveRoot(p.DataRoot)
	if err != nil {
		return nil, err
	}
	changed := false
	for _, f := range pathsOf(&spec) {
		abs, err := confine(root, f.field, *f.v)
		if err != nil {
			return nil, err
		}
		if abs != *f.v {
			*f.v, changed = abs, true
		}
	}
	if !changed {
		return job, nil
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("jobspec: encode job spec: %w", err)
	}
	out := proto.CloneOf(job)
	out.SpecJson = b
	return out, nil
}

// pathField is one path of a spec, by its YAML name.
type pathField struct {
	field string
	v     *string
}

// pathsOf lists the spec's paths that are set: data, out, init_from, and the
// tokenizer when it names a file.
func pathsOf(s *trainer.Spec) []pathField {
	var out []pathField
	for _, f := range []pathField{{"data", &s.Data}, {"out", &s.Out}, {"init_from", &s.InitFrom}, {"tokenizer", &s.Tokenizer}} {
		if *f.v == "" || (f.field == "tokenizer" && (*f.v == "gpt2" || *f.v == "byte")) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// checkPathSyntax refuses paths no file system check is needed to refuse.
func checkPathSyntax(field, v string) error {
	switch {
	case len(v) > maxPathLen:
		return fmt.Errorf("%w: %s is %d bytes, over %d", coordinator.ErrBadCommand, field, len(v), maxPathLen)
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%w: %s=%q must not contain control characters", coordinator.ErrBadCommand, field, v)
	}
	return nil
}

// resolveRoot returns the data root as an absolute path with its symbolic links
// resolved; the root must be an existing directory.
func resolveRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("jobspec: data root %q: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("jobspec: data root %q: %w", dir, err)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", fmt.Errorf("jobspec: data root %q is not a directory", dir)
	}
	return real, nil
}

// confine resolves v (relative paths under root) and checks that it stays under
// root, following the symbolic links of the longest part of it that exists (a run
// directory need not exist yet). root is absolute with its links resolved. It
// returns the cleaned absolute path.
func confine(root, field, v string) (string, error) {
	p := v
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	p = filepath.Clean(p)
	if !within(root, p) {
		return "", fmt.Errorf("%w: %w: %s=%q resolves to %s, outside %s", coordinator.ErrBadCommand, ErrPathEscape, field, v, p, root)
	}
	// Resolve the links of the longest existing prefix; the rest cannot hold links.
	existing, rest := p, ""
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s=%q: %w", coordinator.ErrBadCommand, field, v, err)
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = parent
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("%w: %s=%q: %w", coordinator.ErrBadCommand, field, v, err)
	}
	if !within(root, filepath.Join(real, rest)) {
		return "", fmt.Errorf("%w: %w: %s=%q leads through a symbolic link to %s, outside %s", coordinator.ErrBadCommand, ErrPathEscape, field, v, filepath.Join(real, rest), root)
	}
	return p, nil
}

// within reports whether the clean absolute path p is root or below it.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
