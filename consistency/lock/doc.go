// Package lock is MUSIC's lock service: per-key queues of lock references kept in
// ZooKeeper, with leases so that clients holding no ZooKeeper session (REST callers) can
// hold locks, and fencing timestamps so a later holder's writes always win.
//
// Layout: every lock name "keyspace.table.key" has a persistent node
// <root>/<escaped name>; each lock reference is a persistent-sequential child "w-<seq>"
// (write) or "r-<seq>" (read) whose data is the reference's lease. The ZooKeeper
// sequence number is the reference's ordinal: it only grows for a name, because the
// name's node is never deleted (Delete removes the queue, not the node). A reference is
// returned in ONAP's shape "$<name>$<seq>".
//
// A write reference holds the lock when it is first in the queue; a read reference holds
// it when no write reference is ahead of it. A reference whose lease has expired is
// removed by force (lazily by Acquire and Holders, and by the Reaper), and the name is
// marked unsynced: the next holder must repair the key with a quorum read before its
// first critical operation, then call MarkSynced.
//
// Check and Acquire answer from a cache of verified holdings while a ZooKeeper watch on
// the reference's znode reports no change, for at most a second (WithCheckCache), so a
// critical operation by a holder costs no ZooKeeper round trip; see heldCache for why
// this keeps the guarantees of a fresh check.
//
// Holding.Timestamp turns a reference into a Cassandra write timestamp that is larger for
// every later reference of the same name, whatever the clocks say.
package lock
