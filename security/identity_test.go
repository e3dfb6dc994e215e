package security

import (
	"errors"
	"net/url"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		want Identity
		err  error
	}{
		{"ringtrain://worker/w3", Identity{RoleWorker, "w3"}, nil},
		{"ringtrain://coordinator/ringtrain-coordinator-0", Identity{RoleCoordinator, "ringtrain-coordinator-0"}, nil},
		{"ringtrain://admin/alice", Identity{RoleAdmin, "alice"}, nil},
		{"ringtrain://reader/grafana", Identity{RoleReader, "grafana"}, nil},
		{"ringtrain://root/w3", Identity{}, ErrBadIdentity},
		{"ringtrain://worker/", Identity{}, ErrBadIdentity},
		{"ringtrain://worker/a/b", Identity{}, ErrBadIdentity},
		{"ringtrain://worker:1/w3", Identity{}, ErrBadIdentity},
		{"ringtrain://worker/w3?x=1", Identity{}, ErrBadIdentity},
		{"spiffe://worker/w3", Identity{}, ErrBadIdentity},
		{"ringtrain://u@worker/w3", Identity{}, ErrBadIdentity},
	} {
		u, err := url.Parse(tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseIdentity(u)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("ParseIdentity(%s) = %v, %v; want %v, %v", tc.uri, got, err, tc.want, tc.err)
		}
		if tc.err == nil && got.String() != tc.uri {
			t.Errorf("%v.String() = %s, want %s", got, got.String(), tc.uri)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7000": true, "127.3.4.5:1": true, "[::1]:7000": true, "localhost:7001": true,
		":7000": false, "0.0.0.0:7000": false, "[::]:1": false, "10.0.0.3:7000": false, "host0:7000": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
	if err := CheckPlaintext(map[string]string{"--grpc-addr": "127.0.0.1:1", "--raft-addr": ":7000"}); !errors.Is(err, ErrPlaintext) {
		t.Errorf("CheckPlaintext off loopback = %v, want ErrPlaintext", err)
	}
	if err := CheckPlaintext(map[string]string{"--grpc-addr": "127.0.0.1:1", "--raft-addr": "localhost:0"}); err != nil {
		t.Errorf("CheckPlaintext on loopback = %v", err)
	}
}
