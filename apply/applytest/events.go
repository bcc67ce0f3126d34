// Package applytest builds change events for tests of apply and its sinks, the way capture
// would publish them.
package applytest

import (
	"fmt"
	"time"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Table describes a mirrored table.
type Table struct {
	DB, Name string
	Columns  []changeevent.Column
}

// KV is the shape most tests use: id BIGINT primary key, v VARCHAR, n DECIMAL(20,4),
// u BIGINT UNSIGNED, b BLOB, t DATETIME(6).
func KV(db string) Table {
	return Table{DB: db, Name: "kv", Columns: []changeevent.Column{
		{Name: "id", Kind: changeevent.KindInt, SQLType: "bigint(20)", PK: true},
		{Name: "v", Kind: changeevent.KindString, SQLType: "varchar(64)", Nullable: true},
		{Name: "n", Kind: changeevent.KindDecimal, SQLType: "decimal(20,4)", Nullable: true},
		{Name: "u", Kind: changeevent.KindUint, SQLType: "bigint(20) unsigned", Nullable: true},
		{Name: "b", Kind: changeevent.KindBytes, SQLType: "blob", Nullable: true},
		{Name: "t", Kind: changeevent.KindDateTime, SQLType: "datetime(6)", Nullable: true},
	}}
}

// KVDDL is the CREATE TABLE statement of KV.
const KVDDL = "CREATE TABLE kv (id BIGINT PRIMARY KEY, v VARCHAR(64), n DECIMAL(20,4), u BIGINT UNSIGNED, b BLOB, t DATETIME(6)) ENGINE=InnoDB"

// Row builds a KV row image.
func Row(id int64, v string) changeevent.Row {
	return changeevent.Row{"id": id, "v": v, "n": fmt.Sprintf("%d.5000", id), "u": uint64(1)<<63 + uint64(id),
		"b": []byte{0, byte(id), 255}, "t": "2026-01-02 03:04:05.123456"}
}

// Insert, Update and Delete build row events of t (source fields are set by Tx).
func (t Table) Insert(after changeevent.Row) *changeevent.Event {
	return t.event(changeevent.OpCreate, nil, after)
}

// Update builds an update event.
func (t Table) Update(before, after changeevent.Row) *changeevent.Event {
	return t.event(changeevent.OpUpdate, before, after)
}

// Delete builds a delete event.
func (t Table) Delete(before changeevent.Row) *changeevent.Event {
	return t.event(changeevent.OpDelete, before, nil)
}

func (t Table) event(op changeevent.Op, before, after changeevent.Row) *changeevent.Event {
	return &changeevent.Event{Op: op, Before: before, After: after, Columns: t.Columns,
		Source: changeevent.Source{DB: t.DB, Table: t.Name}}
}

// DDL builds a schema change event.
func DDL(db, table, kind, stmt string) *changeevent.Event {
	return &changeevent.Event{Op: changeevent.OpDDL, DDL: &changeevent.DDL{Statement: stmt, Kind: kind},
		Source: changeevent.Source{DB: db, Table: table}}
}

// Origin is a simulated origin site: its name, GTID domain (= server id) and next
// sequence number.
type Origin struct {
	Name   string
	Domain uint32
	Seq    uint64
}

// NewOrigin returns an origin whose sequence numbers start above any earlier run's, since
// GTIDs and recorded DDL outlive a test's database.
func NewOrigin(name string, domain uint32) *Origin {
	return &Origin{Name: name, Domain: domain, Seq: uint64(time.Now().UnixMicro())}
}

// Tx stamps events as one transaction of o committed at tsMs, with the next GTID.
func (o *Origin) Tx(tsMs int64, events ...*changeevent.Event) []*changeevent.Event {
	o.Seq++
	gtid := fmt.Sprintf("%d-%d-%d", o.Domain, o.Domain, o.Seq)
	for i, e := range events {
		e.Source.Connector, e.Source.Version = "mariadb", "test"
		e.Source.Name, e.Source.ServerID, e.Source.GTID = o.Name, o.Domain, gtid
		e.Source.Row, e.Source.TsMs, e.Source.Snapshot = i, tsMs, "false"
		e.TsMs = tsMs
		e.Transaction = changeevent.Transaction{ID: gtid, Index: i, Total: len(events)}
	}
	return events
}

// Txn is Tx returned as an apply.Txn (round-tripped through JSON like a real delivery).
func (o *Origin) Txn(tsMs int64, events ...*changeevent.Event) *apply.Txn {
	evs := o.Tx(tsMs, events...)
	for i, e := range evs {
		data, err := changeevent.Marshal(e)
		if err != nil {
			panic(err)
		}
		if evs[i], err = changeevent.Unmarshal(data); err != nil {
			panic(err)
		}
	}
	tx, err := apply.NewTxn(evs)
	if err != nil {
		panic(err)
	}
	return tx
}
