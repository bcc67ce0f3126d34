// Package store is MUSIC's data store on Cassandra: keyspaces, tables and rows with
// eventual, critical and atomic consistency, as the ONAP MUSIC v2 API exposes them.
//
// Eventual operations run at consistency ONE. Critical operations need the caller to
// hold the row's lock (see package lock) and run at QUORUM, with writes stamped
// USING TIMESTAMP from the lock reference so a later holder always wins over an earlier
// one. If the lock was released by force before the caller got it, the first critical
// operation repairs the partition first: it reads it at QUORUM and rewrites it under the
// new holder's timestamp. Atomic operations create a lock reference, wait for it, do the
// critical operation and release it, in one call.
//
// A row's lock name is "keyspace.table.key" where key is the value of the table's first
// primary key column, formatted as text, as ONAP MUSIC names it.
//
// Every keyspace, table, column and type name is checked against a strict pattern before
// it reaches CQL, and every value is bound as a parameter, so requests cannot inject CQL.
package store
