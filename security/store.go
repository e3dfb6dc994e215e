package security

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ReloadInterval is how often, at most, a Store looks at its files for changes:
// the check runs on the next handshake after the interval has passed.
const ReloadInterval = time.Second

// material is one consistent set of a Store's contents.
type material struct {
	pool  *x509.CertPool
	cert  tls.Certificate
	self  Identity
	stamp string // the files' sizes and modification times, "" in memory
}

// Store holds the trusted CA bundle and this process's certificate and key.
// A Store read from a directory re-reads it when its files change; a broken
// new set (a key that does not match, a certificate without an identity or of
// another identity than the first) is logged and the old one kept. Its methods are safe for concurrent use.
type Store struct {
	dir string // "" for a memory store
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	cur     *material
	checked time.Time
}

// LoadDir reads ca.crt, tls.crt and tls.key from dir (the Kubernetes TLS Secret
// layout). log receives reload messages; nil discards them.
func LoadDir(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir, log: log, now: time.Now, cur: m, checked: time.Now()}, nil
}

// NewMemoryStore returns a Store of material held in memory; it never reloads.
func NewMemoryStore(is *Issued) (*Store, error) {
	m, err := parseMaterial(is.CAPEM, is.CertPEM, is.KeyPEM, "memory")
	if err != nil {
		return nil, err
	}
	return &Store{log: slog.New(slog.DiscardHandler), now: time.Now, cur: m}, nil
}

// Dir returns the directory the store reads, "" for a memory store.
func (s *Store) Dir() string { return s.dir }

// Identity returns the identity of this process's current certificate.
func (s *Store) Identity() Identity { return s.current().self }

// current returns the material to use now, re-reading the directory first when
// ReloadInterval has passed since the last look and the files changed.
func (s *Store) current() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" || s.now().Sub(s.checked) < ReloadInterval {
		return s.cur
	}
	s.checked = s.now()
	stamp, err := stampDir(s.dir)
	if err != nil || stamp == s.cur.stamp {
		return s.cur
	}
	m, err := readDir(s.dir)
	if err == nil && m.self != s.cur.self {
		// A process is who it started as: a new certificate must name it again.
		err = fmt.Errorf("%w: the new certificate names %s, this process is %s", ErrMaterial, m.self, s.cur.self)
	}
	if err != nil {
		s.log.Warn("certificate files changed but cannot be used; keeping the previous ones", "dir", s.dir, "err", err)
		s.cur.stamp = stamp // do not retry until they change again
		return s.cur
	}
	s.log.Info("certificates reloaded", "dir", s.dir, "identity", m.self.String(), "not_after", m.cert.Leaf.NotAfter)
	s.cur = m
	return m
}

// Reload re-reads the directory now, whatever the interval; it returns the
// error that made the new files unusable (the old ones stay in use).
func (s *Store) Reload() error {
	if s.dir == "" {
		return nil
	}
	m, err := readDir(s.dir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.self != s.cur.self {
		return fmt.Errorf("%w: the new certificate names %s, this process is %s", ErrMaterial, m.self, s.cur.self)
	}
	s.cur, s.checked = m, s.now()
	return nil
}

// stampDir sums up the sizes and modification times of the three files (of what
// their names point to: Kubernetes updates a mounted Secret by swapping a symlink).
func stampDir(dir string) (string, error) {
	var stamp string
	for _, name := range []string{CAFile, CertFile, KeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%s:%d:%d;", name, fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

func readDir(dir string) (*material, error) {
	stamp, err := stampDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (want %s, %s and %s in %s)", ErrMaterial, err, CAFile, CertFile, KeyFile, dir)
	}
	var data [3][]byte
	for i, name := range []string{CAFile, CertFile, KeyFile} {
		if data[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMaterial, err)
		}
	}
	m, err := parseMaterial(data[0], data[1], data[2], dir)
	if err != nil {
		return nil, err
	}
	m.stamp = stamp
	return m, nil
}

func parseMaterial(caPEM, certPEM, keyPEM []byte, where string) (*material, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: %s: %s holds no PEM certificate", ErrMaterial, where, CAFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s and %s: %w", ErrMaterial, where, CertFile, KeyFile, err)
	}
	self, err := IdentityOf(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s: %w", ErrMaterial, where, CertFile, err)
	}
	if _, err := verifyChain(pool, cert.Certificate, x509.ExtKeyUsageAny); err != nil {
		return nil, fmt.Errorf("%w: %s: %s does not chain to %s: %w", ErrMaterial, where, CertFile, CAFile, err)
	}
	return &material{pool: pool, cert: cert, self: self}, nil
}
