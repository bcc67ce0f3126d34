// Package replbench measures replication from one MariaDB site to another: a workload
// generator (bulk or single-row transactions, or a fixed offered load in rows/s), a lag
// probe that notes when each row becomes visible at the destination, and MariaDB's own
// asynchronous replication set up between the same two instances, which is the baseline
// MUSIC's mirroring is compared against in the same run.
package replbench
