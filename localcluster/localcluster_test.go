package localcluster

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

func TestRunRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	ok := Options{Spec: trainer.DefaultSpec(), Workers: 1, Dir: dir}
	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"no workers", func(o *Options) { o.Workers = 0 }},
		{"negative coordinators", func(o *Options) { o.Coordinators = -1 }},
		{"shared client id", func(o *Options) { o.Client = coordinator.ClientOptions{ClientID: "c"} }},
		{"shared listen address", func(o *Options) { o.Worker = worker.Config{Listen: "127.0.0.1:7100"} }},
		{"shared audit log", func(o *Options) { o.Worker = worker.Config{Audit: io.Discard} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			if _, err := Run(context.Background(), o); !errors.Is(err, ErrBadOptions) {
				t.Fatalf("Run: %v, want ErrBadOptions", err)
			}
		})
	}
}
