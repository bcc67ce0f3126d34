// Package prom is the ownership recipe (after ONAP's "prom"): each resource (a sync
// table, "bank.accounts") is owned by at most one site at a time; ownership moves to
// another site when that site asks, and to another site when the owner stops renewing
// its lease (process dead, partitioned). A Manager is one site's side of it.
//
// # Znode layout
//
//	<root>/<resource>              persistent; data = the owner record (JSON)
//	<root>/<resource>/req-<inst>-N ephemeral sequential; "instance inst wants it"
//
// The owner record names the owning Manager (site and a random instance id), its fence,
// since when it owns, and its lease period. On release the record stays, marked free,
// still naming the last owner, so that the next owner learns its predecessor
// (OnAcquire's prev). The resource node is never deleted.
//
// Every change of the record is a versioned Set (compare-and-set on the znode version),
// so exactly one of two racing Managers wins each step. The package talks to ZooKeeper
// directly rather than through consistency/lock: a resource needs one owner, not a
// queue, and a single record per resource makes takeover one conditional write.
//
// # Fence
//
// An acquisition's fence is the mzxid of the record state it overwrote: the ZooKeeper
// transaction id of the record's last change. Zxids only grow, the acquiring write
// itself has a larger zxid, and so does every later renewal; the next acquisition
// overwrites one of these, so fences strictly increase per resource across owners,
// Managers and restarts, even if the node were deleted and created again.
//
// # Lease
//
// The owner renews its record every Lease/4 (a versioned Set that changes nothing but
// the znode version). It considers itself owner only until Lease-Lease/10 after it
// sent its last successful renewal; after that Use no longer admits uses on its
// ownership, the loss is reported to OnLost, and Use must acquire again (with a new
// fence). A Manager waiting for the resource times the owner's record on its own clock:
// once the record has not changed for the owner's lease since it first saw that
// version, it takes the resource over (a failover) with a Set conditional on that
// version. The owner's renewal and the takeover both condition on the same version, so
// only one succeeds, and the owner's validity ended before the takeover could start.
// Only clock rates matter, not clock offsets between sites. A use admitted while the
// lease was valid is not interrupted when it lapses: from then on the fence is what
// tells its writes from the next owner's.
//
// # Yield handshake
//
// A Manager that wants a resource owned by another creates its request node and
// watches the record. The owner watches the resource's children: when a request is
// there and it has owned the resource for MinHold, it stops admitting new uses
// (draining), waits for the uses in flight to end, calls BeforeYield, and writes the
// record free. The watching requester sees the change and claims the record. Several
// requesters race for a free record; the winner is asked in turn (MinHold bounds the
// ping-pong). Uses of the owner's site that arrive while it drains wait and ask for
// the resource back like any other site.
//
// # Cost
//
// Use on a resource this site owns costs no ZooKeeper round trip (a mutex and a clock
// read). A move costs the requester two reads, the request node's create and the
// claiming write (the request's delete is off the path), and the owner a read of the
// requests and one write (the release): three writes on the critical path, about 10ms
// against the local single-server ZooKeeper. An owner writes once per resource every
// Lease/4 to renew.
//
// # Limits
//
//   - A failover takes the owner's lease counted from when the requester first read the
//     record, so a site that starts asking only after the owner died waits a full lease.
//   - Requesters race for a released resource; there is no queue, so no fairness beyond
//     MinHold.
//   - ZooKeeper cannot cancel a call: when ctx ends first, Use returns and a claim or
//     request that succeeds later is undone in the background.
//   - A request node of a requester that died stays until its session expires; until
//     then the owner yields after each MinHold and claims the resource back at its
//     next Use (two writes).
package prom
