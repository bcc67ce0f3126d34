package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"testing"

	"github.com/gocql/gocql"
	"go.uber.org/zap/zaptest"
	"gopkg.in/inf.v0"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/apply/applytest"
	"github.com/music-coord/music/apply/cassandra"
	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

func newSink(t testing.TB) (*cassandra.Sink, *gocql.Session, string) {
	t.Helper()
	ks, session := testenv.NewKeyspace(t)
	s, err := cassandra.New(context.Background(), session, cassandra.Config{Keyspace: ks}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, session, ks
}

func mustApply(t testing.TB, s apply.Sink, tx *apply.Txn) {
	t.Helper()
	if _, err := s.Apply(context.Background(), tx); err != nil {
		t.Fatalf("apply %s: %v", tx.ID, err)
	}
}

// Rows returns the MUSIC store table of db.kv as sorted "id=v" strings.
func Rows(t *testing.T, session *gocql.Session, ks, db string) string {
	t.Helper()
	iter := session.Query(fmt.Sprintf(`SELECT id, v FROM %s."%s"`, ks, cassandra.TableName(db, "kv"))).Iter()
	var id int64
	var v *string
	var out []string
	for iter.Scan(&id, &v) {
		s := "NULL"
		if v != nil {
			s = *v
		}
		out = append(out, fmt.Sprintf("%d=%s", id, s))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestStoreTypedRowsAndConflicts(t *testing.T) {
	s, session, ks := newSink(t)
	kv := applytest.KV("shop")
	x, y := applytest.NewOrigin("x", 1), applytest.NewOrigin("y", 2)
	txs := []*apply.Txn{
		x.Txn(2000, kv.Insert(applytest.Row(1, "x@2000"))),
		y.Txn(1000, kv.Insert(applytest.Row(1, "y@1000")), kv.Insert(applytest.Row(2, "y@1000"))),
		y.Txn(3000, kv.Delete(applytest.Row(2, "y@1000"))),
		x.Txn(2500, kv.Update(applytest.Row(2, "?"), applytest.Row(2, "x@2500"))),
		x.Txn(2000, kv.Insert(applytest.Row(3, "x@2000"))),
		y.Txn(2000, kv.Insert(applytest.Row(3, "y@2000"))),
		// Delete and re-insert in one transaction: the row must survive.
		x.Txn(4000, kv.Insert(applytest.Row(4, "first")), kv.Delete(applytest.Row(4, "first")), kv.Insert(applytest.Row(4, "again"))),
	}
	for i := len(txs) - 1; i >= 0; i-- { // reverse order
		mustApply(t, s, txs[i])
	}
	for _, tx := range txs { // and everything again
		mustApply(t, s, tx)
	}
	if got, want := Rows(t, session, ks, "shop"), "1=x@2000 3=y@2000 4=again"; got != want {
		t.Fatalf("store rows = %q, want %q", got, want)
	}
	var n *inf.Dec
	var u *big.Int
	var b []byte
	var tm, origin, gtid string
	var version int64
	err := session.Query(`SELECT n, u, b, t, music_origin, music_gtid, music_version FROM `+ks+`."shop__kv" WHERE id=3`).
		Scan(&n, &u, &b, &tm, &origin, &gtid, &version)
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := txs[5].Version.WriteTimestamp()
	if n.String() != "3.5000" || u.String() != "9223372036854775811" || string(b) != "\x00\x03\xff" ||
		tm != "2026-01-02 03:04:05.123456" || origin != "y" || gtid != txs[5].ID || version != wt {
		t.Fatalf("row 3 = %v %v %x %q %s %s %d: not exact", n, u, b, tm, origin, gtid, version)
	}
}

func TestStoreDDL(t *testing.T) {
	s, session, ks := newSink(t)
	kv := applytest.KV("shop")
	o := applytest.NewOrigin("x", 1)
	mustApply(t, s, o.Txn(1, kv.Insert(applytest.Row(1, "a"))))
	// ALTER carrying the new columns adds one.
	alter := applytest.DDL("shop", "kv", "ALTER", "ALTER TABLE kv ADD extra DOUBLE")
	alter.Columns = append(append(alter.Columns, kv.Columns...), applytest.KV("").Columns[0])
	alter.Columns[len(alter.Columns)-1].Name, alter.Columns[len(alter.Columns)-1].Kind, alter.Columns[len(alter.Columns)-1].PK = "extra", "double", false
	mustApply(t, s, o.Txn(2, alter))
	if err := session.Query(`SELECT extra FROM ` + ks + `."shop__kv"`).Exec(); err != nil {
		t.Fatalf("column not added: %v", err)
	}
	mustApply(t, s, o.Txn(3, applytest.DDL("shop", "kv", "TRUNCATE", "TRUNCATE TABLE `kv`")))
	if got := Rows(t, session, ks, "shop"); got != "" {
		t.Fatalf("after TRUNCATE rows = %q", got)
	}
	mustApply(t, s, o.Txn(4, applytest.DDL("shop", "kv", "DROP", "DROP TABLE IF EXISTS kv")))
	if err := session.Query(`SELECT * FROM ` + ks + `."shop__kv"`).Exec(); err == nil {
		t.Fatal("table not dropped")
	}
	bad := applytest.KV(`shop"; DROP KEYSPACE x; --`)
	_, err := s.Apply(context.Background(), o.Txn(6, bad.Insert(applytest.Row(1, "a"))))
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("bad identifier = %v, want refused", err)
	}
}

// TestStoreRefusesEmptyKey: a row whose one-column key is empty cannot be stored
// (Cassandra: key may not be empty): its insert is refused, so the worker quarantines the
// table instead of retrying, and its delete, which has nothing to remove, succeeds.
func TestStoreRefusesEmptyKey(t *testing.T) {
	s, _, _ := newSink(t)
	tbl := applytest.Table{DB: "d", Name: "poison", Columns: []changeevent.Column{
		{Name: "k", Kind: changeevent.KindBytes, SQLType: "varbinary(16)", PK: true},
		{Name: "v", Kind: changeevent.KindInt, SQLType: "int(11)"},
	}}
	o := applytest.NewOrigin("a", 1)
	row := changeevent.Row{"k": []byte{}, "v": int64(1)}
	_, err := s.Apply(context.Background(), o.Txn(1000, tbl.Insert(row)))
	if !errors.Is(err, apply.ErrRefused) || !strings.Contains(err.Error(), "empty primary key") {
		t.Fatalf("insert of an empty key: got %v, want a refusal naming the empty key", err)
	}
	mustApply(t, s, o.Txn(2000, tbl.Delete(row)))
	mustApply(t, s, o.Txn(3000, tbl.Insert(changeevent.Row{"k": []byte("ok"), "v": int64(2)})))
}
