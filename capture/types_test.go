package capture

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
)

const typesTable = `CREATE TABLE types (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE, b1 BIT(1), b64 BIT(64),
  e ENUM('a','b c','ü'), s SET('x','y','z'),
  dt DATE, t0 TIME, t3 TIME(3), t6 TIME(6),
  dt0 DATETIME, dt1 DATETIME(1), dt3 DATETIME(3), dt6 DATETIME(6),
  ts0 TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL, ts6 TIMESTAMP(6) NULL, y YEAR,
  c CHAR(10), vc VARCHAR(100), tx TEXT, mt MEDIUMTEXT,
  bn BINARY(4), vb VARBINARY(10), bl BLOB, lb LONGBLOB, j JSON,
  g BIGINT AS (i * 2) VIRTUAL, gs VARCHAR(120) AS (CONCAT(vc, '!')) STORED,
  n VARCHAR(10) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

const typesInsert = `INSERT INTO types (id,ti,tiu,si,siu,mi,miu,i,iu,bi,bu,d,d2,f,db,b1,b64,e,s,dt,t0,t3,t6,dt0,dt1,dt3,dt6,ts0,ts2,ts6,y,c,vc,tx,mt,bn,vb,bl,lb,j,n) VALUES
 (1,-128,255,-32768,65535,-8388608,16777215,-2147483648,4294967295,-9223372036854775808,18446744073709551615,
  '-12345678901234567890123456789012345.123456789012345678901234567890','-0.05',0.1,1.7976931348623157e308,b'1',0xFFFFFFFFFFFFFFFF,
  'ü','x,z','9999-12-31','-838:59:59','-00:00:01.500','838:59:59.000000',
  '1000-01-01 00:00:00','2024-02-29 12:34:56.7','9999-12-31 23:59:59.999','2024-01-01 00:00:00.000001',
  '1970-01-01 00:00:01','2038-01-19 03:14:07.99','2024-06-01 12:00:00.123456',2155,
  '🎵',CONCAT('héllo 🎵 ',CHAR(0),' end'),'',REPEAT('ab',1000),0x00FF0000,0x000102,0x00,'',
  '{"a": [1, 2.5, "x"], "b": null}',NULL),
 (18446744073709551615,0,0,0,0,0,0,NULL,0,0,0,0,0,-1.5,-0.000001,b'0',0,'a','','0000-00-00','00:00:00','00:00:00.000','-00:00:00.000001',
  '0000-00-00 00:00:00',NULL,NULL,'0000-00-00 00:00:00.000000',NULL,NULL,NULL,0,
  '','',NULL,NULL,NULL,'',NULL,NULL,NULL,'')`

func typesExpected() map[uint64]changeevent.Row {
	return map[uint64]changeevent.Row{
		1: {
			"id": uint64(1), "ti": int64(-128), "tiu": uint64(255), "si": int64(-32768), "siu": uint64(65535),
			"mi": int64(-8388608), "miu": uint64(16777215), "i": int64(math.MinInt32), "iu": uint64(math.MaxUint32),
			"bi": int64(math.MinInt64), "bu": uint64(math.MaxUint64),
			"d": "-12345678901234567890123456789012345.123456789012345678901234567890", "d2": "-0.05",
			"f": float32(0.1), "db": 1.7976931348623157e308, "b1": uint64(1), "b64": uint64(math.MaxUint64),
			"e": "ü", "s": "x,z", "dt": "9999-12-31", "t0": "-838:59:59", "t3": "-00:00:01.500", "t6": "838:59:59.000000",
			"dt0": "1000-01-01 00:00:00", "dt1": "2024-02-29 12:34:56.7", "dt3": "9999-12-31 23:59:59.999",
			"dt6": "2024-01-01 00:00:00.000001", "ts0": "1970-01-01 00:00:01", "ts2": "2038-01-19 03:14:07.99",
			"ts6": "2024-06-01 12:00:00.123456", "y": int64(2155), "c": "🎵", "vc": "héllo 🎵 \x00 end", "tx": "",
			"mt": strings.Repeat("ab", 1000), "bn": []byte{0, 0xff, 0, 0}, "vb": []byte{0, 1, 2}, "bl": []byte{0},
			"lb": []byte{}, "j": `{"a": [1, 2.5, "x"], "b": null}`, "g": int64(2 * math.MinInt32),
			"gs": "héllo 🎵 \x00 end!", "n": nil,
		},
		math.MaxUint64: {
			"id": uint64(math.MaxUint64), "ti": int64(0), "tiu": uint64(0), "si": int64(0), "siu": uint64(0), "mi": int64(0),
			"miu": uint64(0), "i": nil, "iu": uint64(0), "bi": int64(0), "bu": uint64(0),
			"d": "0.000000000000000000000000000000", "d2": "0.00", "f": float32(-1.5), "db": -0.000001,
			"b1": uint64(0), "b64": uint64(0), "e": "a", "s": "", "dt": "0000-00-00", "t0": "00:00:00", "t3": "00:00:00.000",
			"t6": "-00:00:00.000001", "dt0": "0000-00-00 00:00:00", "dt1": nil, "dt3": nil, "dt6": "0000-00-00 00:00:00.000000",
			"ts0": nil, "ts2": nil, "ts6": nil, "y": int64(0), "c": "", "vc": "", "tx": nil, "mt": nil, "bn": nil,
			"vb": []byte{}, "bl": nil, "lb": nil, "j": nil, "g": nil, "gs": "!", "n": "",
		},
	}
}

func diffRow(t *testing.T, what string, got, want changeevent.Row) {
	t.Helper()
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: column %s missing (want %#v)", what, k, want[k])
			continue
		}
		if !reflect.DeepEqual(g, want[k]) {
			t.Errorf("%s: column %s = %#v (%T), want %#v (%T)", what, k, g, g, want[k], want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected column %s = %#v", what, k, got[k])
		}
	}
}

// TestTypesRoundTrip writes every MariaDB type with edge values and checks that the
// binlog events and the snapshot rows carry exactly the values written, through JSON.
func TestTypesRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec(typesTable)
	r := h.start(h.cfg)
	h.exec(typesInsert, "UPDATE types SET vc='x' WHERE id=1", "DELETE FROM types WHERE id=18446744073709551615")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.c.Snapshot(ctx, h.db, "types"); err != nil {
		t.Fatal(err)
	}
	events := h.readRows(h.cfg.Stream, 5, 30*time.Second)
	want := typesExpected()
	var ops []string
	for _, e := range events {
		ops = append(ops, string(e.Op))
	}
	if got := strings.Join(ops, ","); got != "c,c,u,d,r" {
		t.Fatalf("ops %s, want c,c,u,d,r", got)
	}
	ins := events[0]
	if ins.Transaction.Total != 2 || ins.Transaction.Index != 0 || events[1].Transaction.Index != 1 || !events[1].Transaction.Last {
		t.Errorf("transaction of the insert: %+v / %+v, want index 0,1 of total 2, last on the second", ins.Transaction, events[1].Transaction)
	}
	if ins.Source.GTID == "" || ins.Source.DB != h.db || ins.Source.Table != "types" || ins.Source.Name != h.cfg.Site {
		t.Errorf("source %+v", ins.Source)
	}
	diffRow(t, "insert id 1", events[0].After, want[1])
	diffRow(t, "insert id max", events[1].After, want[math.MaxUint64])
	diffRow(t, "update before", events[2].Before, want[1])
	after := want[1]
	after["vc"], after["gs"] = "x", "x!"
	diffRow(t, "update after", events[2].After, after)
	diffRow(t, "delete before", events[3].Before, want[math.MaxUint64])
	diffRow(t, "snapshot row", events[4].After, after)
	if events[4].Source.Snapshot != "last" {
		t.Errorf("snapshot's last row has source.snapshot %q, want last", events[4].Source.Snapshot)
	}
	if !reflect.DeepEqual(events[3].Key, changeevent.Row{"id": uint64(math.MaxUint64)}) {
		t.Errorf("delete key %#v", events[3].Key)
	}
	kinds := map[string]changeevent.Column{}
	for _, c := range ins.Columns {
		kinds[c.Name] = c
	}
	for name, want := range map[string]changeevent.Kind{"j": changeevent.KindJSON, "bu": changeevent.KindUint, "ts6": changeevent.KindTimestamp,
		"bl": changeevent.KindBytes, "tx": changeevent.KindString, "e": changeevent.KindEnum} {
		if kinds[name].Kind != want {
			t.Errorf("column %s kind %q, want %q", name, kinds[name].Kind, want)
		}
	}
	if c := kinds["d"]; c.SQLType != "decimal(65,30)" || !kinds["id"].PK || kinds["id"].Nullable {
		t.Errorf("columns d %+v id %+v", c, kinds["id"])
	}
}

// TestCharsetsRoundTrip writes a value in every character set MariaDB 10.11 has, with
// bytes beyond ASCII (and, for single-byte charsets, bytes the charset does not define),
// and checks that capture carries each exactly: UTF-8 text for the charsets MariaDB
// converts reversibly, the column's own bytes otherwise, with charset and collation named.
func TestCharsetsRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	db := h.pool
	rows, err := db.Query("SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS WHERE CHARACTER_SET_NAME <> 'binary' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var sets []string
	for rows.Next() {
		var cs string
		if err := rows.Scan(&cs); err != nil {
			t.Fatal(err)
		}
		sets = append(sets, cs)
	}
	rows.Close()
	if len(sets) < 39 {
		t.Fatalf("only %d character sets", len(sets))
	}
	var defs, names, vals []string
	want := map[string][]byte{}
	for _, cs := range sets {
		col := "c_" + cs
		defs = append(defs, fmt.Sprintf("%s VARCHAR(20) CHARACTER SET %s", col, cs))
		// Each charset's own bytes for a few characters beyond ASCII (MariaDB converts).
		var b []byte
		if err := db.QueryRow(fmt.Sprintf("SELECT CAST(CONVERT(_utf8mb4'aé€жÄ' USING %s) AS BINARY)", cs)).Scan(&b); err != nil {
			t.Fatal(err)
		}
		var mx int
		if err := db.QueryRow("SELECT MAXLEN FROM information_schema.CHARACTER_SETS WHERE CHARACTER_SET_NAME=?", cs).Scan(&mx); err != nil {
			t.Fatal(err)
		}
		if mx == 1 {
			b = append(b, 0x81, 0x8d, 0x9d, 0xff) // bytes some single-byte charsets leave undefined
		}
		want[col] = b
		names = append(names, col)
		vals = append(vals, fmt.Sprintf("X'%x'", b))
	}
	h.exec("CREATE TABLE cs (id INT PRIMARY KEY, " + strings.Join(defs, ", ") + ")")
	h.cfg.Start = binlogEnd(t, h.pool) // the CREATE is not what this test reads
	h.start(h.cfg)
	h.exec("INSERT INTO cs (id, " + strings.Join(names, ",") + ") VALUES (1, " + strings.Join(vals, ",") + ")")
	events := h.readRows(h.cfg.Stream, 1, 30*time.Second)
	e := events[0]
	cols := map[string]changeevent.Column{}
	for _, c := range e.Columns {
		cols[c.Name] = c
	}
	for _, col := range names {
		c := cols[col]
		cs := strings.TrimPrefix(col, "c_")
		if c.Charset != cs || !strings.HasPrefix(c.Collation, cs) {
			t.Errorf("%s: charset %q collation %q", col, c.Charset, c.Collation)
		}
		got := e.After[col]
		if changeevent.TextCharset(cs) {
			s, ok := got.(string)
			if c.Kind != changeevent.KindString || !ok {
				t.Errorf("%s: kind %s value %T, want text", col, c.Kind, got)
				continue
			}
			back, err := changeevent.EncodeText(cs, s)
			if err != nil || !bytes.Equal(back, want[col]) {
				t.Errorf("%s: %q encodes to %x (%v), want %x", col, s, back, err, want[col])
			}
			continue
		}
		b, ok := got.([]byte)
		if c.Kind != changeevent.KindBytes || !ok || !bytes.Equal(b, want[col]) {
			t.Errorf("%s: kind %s value %#v, want bytes %x", col, c.Kind, got, want[col])
		}
	}
	if latin1, _ := e.After["c_latin1"].(string); latin1 != "aé€?Ä\u0081\u008d\u009dÿ" {
		t.Errorf("latin1 value %q", latin1)
	}
}
