// Package testenv hands tests real servers: the MariaDB of each site, NATS JetStream,
// Cassandra and ZooKeeper of the local topology (deploy/local).
//
// Each helper reuses a running `make up` topology, or starts the missing service with the
// project's own scripts (deploy/local/install.sh and up.sh), serialised across the test
// processes of one `go test ./...` run. A service that cannot start fails the test with
// the service's name and its log path; nothing is skipped. Helpers also isolate tests: a
// fresh database, keyspace, stream prefix or ZooKeeper root per test, removed at cleanup,
// so tests can run in parallel against the one topology.
package testenv
