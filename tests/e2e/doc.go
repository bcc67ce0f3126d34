// Package e2e holds end-to-end tests of MUSIC's asynchronous mirroring: the real `music
// capture` and `music apply` binaries, one pair per site, run as subprocesses against the
// local topology (internal/testenv: MariaDB sites a, b, c, NATS, Cassandra), killed and
// restarted while writers run at every site, and checked for convergence (CHECKSUM TABLE,
// the MUSIC store's rows, the change streams). The benchmark compares mirroring from site
// a to site b with MariaDB's own asynchronous replication between the same two servers.
//
// They run with the e2e build tag (`make e2e`), apart from `make test`, because they do not
// yet pass reliably (issue 4): TestThreeSitesConverge passed 15 of about 20 runs alone, and
// failed both runs beside TestNATSRestartConverge, ending with sites that disagree on a few
// hot keys (one site keeps another's older value, or lacks a re-inserted row).
package e2e
