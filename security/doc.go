// Package security holds ringtrain's transport security: who a peer is, what it
// may do, and the TLS configurations that prove it.
//
// Identity. Every process holds an X.509 certificate whose one ringtrain URI SAN
// names its role and id: ringtrain://worker/w3, ringtrain://coordinator/c0,
// ringtrain://admin/alice, ringtrain://reader/grafana (identity.go). A peer's id
// is read from the certificate it proved in the TLS handshake, never from a
// message field: the handlers compare the fields that claim an id with it.
//
// Policy. What each role may call is a pure table (policy.go): method → the roles
// allowed and, per role, the request field that must name the caller itself (a
// worker may heartbeat only as itself). UnaryServerInterceptor and
// StreamServerInterceptor (grpc.go) apply a table at the gRPC edge; the table
// itself is tested without I/O.
//
// Material. A Store (store.go) holds the trusted CA bundle and this process's
// certificate and key, in the layout of a Kubernetes TLS Secret or a
// cert-manager Certificate: ca.crt, tls.crt, tls.key in one directory. It
// re-reads the files when they change (checked at most once per ReloadInterval,
// on the next handshake), so a rotated certificate is used without a restart.
// NewMemoryStore holds material made in memory (ringtrain local's ephemeral CA).
//
// Configurations (config.go). Every channel is mutual TLS 1.3 with chains
// verified against the Store's current CA bundle on every handshake. Peers are
// authenticated by identity, not by host name, as SPIFFE does: a server accepts
// the roles its channel names; a client checks the server's role, and its id
// where it dials one particular peer (a ring neighbour). Conns (conn.go) wraps
// raw TCP connections (the Raft transport, the all-reduce lanes) with a
// handshake deadline.
//
// Certificates (certs.go, cluster_certs.go): NewCA and Issue make a CA and role
// certificates (ECDSA P-256), WriteDir writes them in the Secret layout, IssueAll
// keeps a whole cluster's set issued and fresh; `ringtrain certs` is the command
// line over them. listen.go holds the rule that plain text is served on loopback
// only.
//
// Who calls it: coordinator (gRPC server and client, the Raft stream layer),
// allreduce (ring links and lanes), worker (its peer server and probes),
// localcluster (an ephemeral CA), cmd/ringtrain (--tls-dir, certs) and bench.
// It imports nothing of the module.
//
// Usage:
//
//	st, err := security.LoadDir("/etc/ringtrain/tls", log)
//	srv := grpc.NewServer(grpc.Creds(st.ServerCredentials(security.AnyMember)),
//		grpc.ChainUnaryInterceptor(security.UnaryServerInterceptor(policy, log)),
//		grpc.ChainStreamInterceptor(security.StreamServerInterceptor(policy, log)))
//	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(
//		st.ClientCredentials(security.Expect{Roles: []security.Role{security.RoleCoordinator}})))
package security
