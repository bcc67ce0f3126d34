// Package cassandra is the apply sink that writes the MUSIC store: one typed Cassandra
// table per mirrored MariaDB table, holding every site's latest row state.
//
// # Tables
//
// The table for db.table is "<db>__<table>" in the configured keyspace (names are quoted,
// must match [A-Za-z0-9_]+ and fit Cassandra's 48 characters; the mapping is registered in
// music_tables, so two source tables can never share one). Its primary key is the source
// primary key, all of it the partition key. Three columns are added: music_origin (origin
// site), music_gtid (origin GTID) and music_version (the write timestamp below). Tables are
// created, and columns added, from the columns of the events (row or DDL); a column whose
// kind changes is refused. A renamed table is moved and a changed primary key rebuilds the
// table (ddl.go), only once every stored row has a value for the new key (otherwise the
// change is refused: resync the table); row writes and rebuilds of one table exclude each
// other, so no write lands in a table being copied. Tables without a primary key are kept
// as multisets (one row per copy).
//
// # Types
//
//	int, year        bigint
//	uint, bit        varint (BIGINT UNSIGNED max included)
//	float            float
//	double           double
//	decimal          decimal (scale kept: "12.3400" stays 12.3400)
//	bytes            blob
//	date, time,      text, exactly as MariaDB shows them ("0000-00-00" and TIME beyond 24 h
//	datetime,        included; DATETIME(6)/TIMESTAMP(6) keep microseconds; timestamps are UTC;
//	timestamp        the text sorts like the value)
//	string, enum,    text
//	set, json
//
// # Conflicts
//
// Every write carries the client timestamp apply.Version.WriteTimestamp(), so Cassandra's
// own last-write-wins picks the same winner as apply/mariadb, re-delivery rewrites
// identical cells, and a delete leaves a tombstone that shadows older writes. Within one
// transaction only the last change of each row is written (a delete and a re-insert with
// one timestamp would otherwise let the tombstone win). The statements of one transaction
// run concurrently and are not atomic as a group; a crash part-way is repaired by the
// redelivery of the whole transaction.
package cassandra
