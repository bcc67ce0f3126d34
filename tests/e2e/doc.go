// Package e2e holds end-to-end tests of MUSIC's asynchronous mirroring: the real `music
// capture` and `music apply` binaries, one pair per site, run as subprocesses against the
// local topology (internal/testenv: MariaDB sites a, b, c, NATS, Cassandra), killed and
// restarted while writers run at every site, and checked for convergence (CHECKSUM TABLE,
// the MUSIC store's rows, the change streams). The benchmark compares mirroring from site
// a to site b with MariaDB's own asynchronous replication between the same two servers.
//
// They run with the e2e build tag (`make e2e`), apart from `make test`: each takes about a
// minute of both cores and they failed 2 runs in 20 for reasons not yet found (issue 4).
package e2e
