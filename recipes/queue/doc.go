// Package queue is musicQ: a work queue on Cassandra shared by producers and consumers
// at every site. Enqueue adds a message to one of Config.Shards shards at one of
// Config.Priorities priorities; Claim leases the first visible message for a visibility
// timeout; Ack deletes it; Nack makes it visible again at once; a message whose lease
// expires (its consumer died) is claimed again. Delivery is at least once; each message
// is acknowledged at most once.
//
// # Layout
//
// Messages live in partitions (shard, priority, bucket), where bucket is the enqueue
// time cut into Config.Bucket slices, clustered by a time UUID: a shard's messages of
// one priority come out in enqueue order (FIFO per shard and priority), and no partition
// grows without bound however hot a shard is. Claim takes priority 0 first, then 1, ...
//
// A message's state is a lease row of its own, <name>_leases (id, claims, lease_until),
// and every change of it is a lightweight transaction: the first claim creates it
// (IF NOT EXISTS), later claims set a new lease and claims+1 (IF claims = n), ack sets
// claims to -1 (IF claims = n) and then deletes the message, nack clears the lease (IF
// claims = n). A consumer whose lease expired and whose message was claimed again cannot
// ack it (ErrLeaseLost), and an acknowledged message is never claimed again. Because
// each lease is its own partition, claims of different messages never contend in Paxos
// (kept in the message rows, they made every consumer queue on the Paxos state of the
// one hot bucket). Lease rows carry a TTL of Config.Retention.
//
// # Reads do not walk tombstones
//
// An ack leaves a tombstone. Claims read a slice after the last message this Queue saw
// in the partition (id > last), which Cassandra serves without reading the tombstones
// before it, and move to the next bucket only when the current one is past. A sweep,
// at most every Config.Sweep per shard and priority, reads the live buckets from the
// start to find messages whose lease expired or that a producer with a late clock
// placed behind the claim position; it moves a persisted cursor past buckets that are
// empty and older than Config.Grace, so no read ever touches a drained bucket again.
// Producers' clocks must be within Config.Grace of each other for their messages to
// land in live buckets.
//
// # Figures
//
// On the shared development machine (2 cores, load average 15 to 28, single-node
// Cassandra), three sites, 8 or 16 shards, 3 priorities:
//
//	BenchmarkQueue/enqueue      1,900 to 3,900 messages/s (4 workers)
//	BenchmarkQueue/claim+ack    160 messages/s (4 workers, load ~14)
//	TestProducersConsumers      end to end, 6 producers and 9 consumers, one dying with
//	                            a message, 2% nacked: 2,000 messages 210 to 255/s;
//	                            20,000 messages with -race 212/s (94 s)
//
// Claim plus ack is two lightweight transactions and two reads per message, so its rate
// follows the Paxos latency of the cluster. Runs:
//
//	go test -race -run TestProducersConsumers ./recipes/queue/         # 20,000 messages
//	MUSICQ_MESSAGES=1000000 go test -timeout 24h -run TestProducersConsumers ./recipes/queue/  # soak
//	go test -run '^$' -bench Queue -benchtime 1000x ./recipes/queue/
package queue
