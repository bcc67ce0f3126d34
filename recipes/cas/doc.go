// Package cas is musicCAS: compare-and-set on one row of a MUSIC table at quorum, across
// sites. Swap reads the row, lets the caller decide what to write from what it saw, and
// writes it, with nothing else writing the row in between. The REST conditional API
// (/conditional/insert and /conditional/update) is built on it.
//
// # Lock plus critical put, not lightweight transactions
//
// Swap takes the row's MUSIC lock (package lock), reads at QUORUM and writes at QUORUM
// stamped with the lock's fencing timestamp, then releases the lock: MUSIC's own critical
// operations. A Cassandra lightweight transaction (INSERT ... IF NOT EXISTS, UPDATE ... IF
// col = ?, Paxos at SERIAL) is faster. BenchmarkClaim, three sites on the local
// single-node Cassandra and ZooKeeper, 2 cores, four workers racing in pairs for fresh
// job rows (go test -run '^$' -bench Claim -benchtime 3s):
//
//	                        run 1 (load ~20)        run 2 (load ~14)
//	lock + critical put      98 claims/s, 10.2 ms   130 claims/s, 7.7 ms
//	lightweight transaction 869 claims/s,  1.2 ms  2155 claims/s, 0.5 ms
//
// The lock is still the choice, for correctness rather than speed:
//   - Critical and atomic writes are stamped with fencing timestamps far ahead of the
//     wall clock (lock.Holding.Timestamp). A lightweight transaction writes with the
//     current time, so on any row ever written critically its write would be silently
//     shadowed, and its IF would compare against values it cannot replace.
//   - Cassandra does not order lightweight transactions against plain writes to the same
//     cells; ONAP clients (HAS) write the same rows with the conditional API and with
//     critical and eventual operations.
//   - ONAP MUSIC's conditional API takes the row's lock; a client holding that lock for a
//     critical operation must exclude a concurrent conditional write, which only the
//     lock does.
//
// A table written only through CAS could use lightweight transactions; that is not done.
//
// The lock's lease (Config.Lease) bounds how long a crashed caller blocks the row: the
// next holder's first operation repairs the row (see package store) before it reads.
package cas
