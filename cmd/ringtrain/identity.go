package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/security"
)

// identity is what a process learns about itself from the environment a scheduler
// gives it: a Kubernetes pod (the downward API), a PyTorchJob or TrainJob replica,
// or a torchrun child. It fills flags that were given neither on the command line
// nor as RINGTRAIN_<FLAG>; docs/kubernetes.md has the table.
type identity struct {
	// Name is the stable id: POD_NAME, else the host name, with "-<LOCAL_RANK>"
	// appended when LOCAL_WORLD_SIZE says several processes share the pod. In a
	// pod of an Indexed Job (JOB_COMPLETION_INDEX is set) it is the host name even
	// when POD_NAME is set: the Job controller names the host <job>-<index> and
	// keeps that name for the pod that replaces a failed one, while the pod name
	// ends in a random suffix.
	Name string
	// Ordinal is the replica's index: POD_INDEX (the apps.kubernetes.io/pod-index
	// label), JOB_COMPLETION_INDEX, PET_NODE_RANK, RANK or GROUP_RANK, else the
	// numeric suffix of the pod or host name ("ringtrain-worker-2" is 2); -1 when
	// none says. It is logged with every line of the worker and the coordinator.
	Ordinal int
	// OrdinalFrom names the variable (or "name") the ordinal came from.
	OrdinalFrom string
	// Coordinators is the coordinator gRPC address from PET_MASTER_ADDR and
	// PET_MASTER_PORT, else MASTER_ADDR and MASTER_PORT ("" when unset). Without a
	// port the coordinator's default gRPC port is used.
	Coordinators string
	// MinWorkers and MaxWorkers come from PET_NNODES ("N" or "MIN:MAX"), else
	// WORLD_SIZE (both N); 0 when unset.
	MinWorkers, MaxWorkers int
}

// defaultGRPCPort is the port of `ringtrain coordinator --grpc-addr`'s default.
const defaultGRPCPort = "7001"

// identityFromEnv reads the identity from lookup (os.LookupEnv in the binary), with
// hostname as the fallback name. A variable that is set but malformed is an error
// that names it.
func identityFromEnv(lookup func(string) (string, bool), hostname string) (identity, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	id := identity{Ordinal: -1}

	id.Name = get("POD_NAME")
	if id.Name == "" || (get("JOB_COMPLETION_INDEX") != "" && hostname != "") {
		id.Name = hostname
	}
	base := id.Name
	if lws := get("LOCAL_WORLD_SIZE"); lws != "" {
		n, err := strconv.Atoi(lws)
		if err != nil || n < 1 {
			return identity{}, fmt.Errorf("LOCAL_WORLD_SIZE=%q: want a positive integer", lws)
		}
		if n > 1 {
			lr := get("LOCAL_RANK")
			r, err := strconv.Atoi(lr)
			if err != nil || r < 0 || r >= n {
				return identity{}, fmt.Errorf("LOCAL_RANK=%q: want an integer in [0, %d) with LOCAL_WORLD_SIZE=%d", lr, n, n)
			}
			id.Name = fmt.Sprintf("%s-%d", id.Name, r)
		}
	}

	for _, k := range []string{"POD_INDEX", "JOB_COMPLETION_INDEX", "PET_NODE_RANK", "RANK", "GROUP_RANK"} {
		v := get(k)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return identity{}, fmt.Errorf("%s=%q: want a non-negative integer", k, v)
		}
		id.Ordinal, id.OrdinalFrom = n, k
		break
	}
	if id.Ordinal < 0 {
		if n, ok := nameOrdinal(base); ok {
			id.Ordinal, id.OrdinalFrom = n, "name"
		}
	}

	for _, pre := range []string{"PET_", ""} {
		addr := get(pre + "MASTER_ADDR")
		if addr == "" {
			continue
		}
		port := get(pre + "MASTER_PORT")
		if port == "" {
			port = defaultGRPCPort
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return identity{}, fmt.Errorf("%sMASTER_PORT=%q: want a port number", pre, port)
		}
		id.Coordinators = net.JoinHostPort(addr, port)
		break
	}

	if v := get("PET_NNODES"); v != "" {
		lo, hi, ok := strings.Cut(v, ":")
		if !ok {
			hi = lo
		}
		minN, err1 := strconv.Atoi(lo)
		maxN, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || minN < 1 || maxN < minN {
			return identity{}, fmt.Errorf("PET_NNODES=%q: want N or MIN:MAX with 1 <= MIN <= MAX", v)
		}
		id.MinWorkers, id.MaxWorkers = minN, maxN
	} else if v := get("WORLD_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return identity{}, fmt.Errorf("WORLD_SIZE=%q: want a positive integer", v)
		}
		id.MinWorkers, id.MaxWorkers = n, n
	}
	return id, nil
}

// nameOrdinal returns the number after the last dash of a StatefulSet-style name.
func nameOrdinal(name string) (int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// apply sets the flags of cmd that the user left alone (on the command line and in
// RINGTRAIN_<FLAG>): --id from Name on worker and coordinator, --coordinators from
// Coordinators on worker, submit and status, and submit's --min-workers and
// --max-workers from the world size. Other commands are left alone (`local` has a
// --coordinators of its own that counts replicas).
func (id identity) apply(cmd *cobra.Command) error {
	fs := cmd.Flags()
	set := func(name, value string) error {
		f := fs.Lookup(name)
		if f == nil || f.Changed || value == "" {
			return nil
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("--%s %q from the environment: %w", name, value, err)
		}
		return nil
	}
	var sets [][2]string
	switch cmd.Name() {
	case "coordinator":
		sets = [][2]string{{"id", id.Name}}
	case "worker":
		sets = [][2]string{{"id", id.Name}, {"coordinators", id.Coordinators}}
	case "status":
		sets = [][2]string{{"coordinators", id.Coordinators}}
	case "submit":
		sets = [][2]string{{"coordinators", id.Coordinators}}
		if id.MinWorkers > 0 {
			sets = append(sets, [2]string{"min-workers", strconv.Itoa(id.MinWorkers)}, [2]string{"max-workers", strconv.Itoa(id.MaxWorkers)})
		}
	}
	for _, kv := range sets {
		if err := set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// certifiedID returns the id a worker or coordinator runs as. An id the user gave
// (--id or RINGTRAIN_ID) is kept, and the process checks at start that its
// certificate names it. Otherwise, with TLS on (st non-nil), it is the id the
// certificate names, since a peer's id always comes from its certificate: a
// certificate issued per pod (cert-manager's csi-driver, whose URI SAN can only
// name the pod, not an Indexed Job's host name) then decides the id. Without TLS
// the default from the environment (id) stays. A certificate of another role is
// an error naming it.
func certifiedID(role security.Role, id string, given bool, st *security.Store) (string, error) {
	if given || st == nil {
		return id, nil
	}
	who := st.Identity()
	if who.Role != role {
		return "", fmt.Errorf("--tls-dir: the certificate names %s, a %s needs %s://%s/ID", who, role, security.Scheme, role)
	}
	return who.ID, nil
}
