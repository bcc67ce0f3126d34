package mariadb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

// Peer reads a table from another site's MariaDB as a resync reference (`music resync
// --from-site`): its rows, with the versions its row_versions records for them, all read
// in one consistent snapshot.
type Peer struct {
	db   *sql.DB
	meta string // quoted
	name string
}

var _ apply.Reference = (*Peer)(nil)

// OpenPeer opens the peer site name's MariaDB at dsn; metaSchema is its MUSIC metadata
// schema (default "music").
func OpenPeer(dsn, metaSchema, name string) (*Peer, error) {
	if metaSchema == "" {
		metaSchema = "music"
	}
	meta, err := quote(metaSchema)
	if err != nil {
		return nil, fmt.Errorf("mariadb: meta_schema: %w", err)
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mariadb: peer %s dsn: %w", name, err)
	}
	mc.ParseTime = false
	mc.InterpolateParams = true
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	return &Peer{db: db, meta: meta, name: name}, nil
}

// Close closes the connections.
func (p *Peer) Close() error { return p.db.Close() }

// Columns describes db.table at the peer.
func (p *Peer) Columns(ctx context.Context, db, table string) ([]changeevent.Column, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_KEY,
		IFNULL(CHARACTER_SET_NAME,''), IFNULL(COLLATION_NAME,'')
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=? AND TABLE_NAME=? ORDER BY ORDINAL_POSITION`, db, table)
	if err != nil {
		return nil, fmt.Errorf("mariadb: describe %s.%s at %s: %w", db, table, p.name, err)
	}
	defer rows.Close()
	var cols []changeevent.Column
	for rows.Next() {
		var name, colType, dataType, nullable, key, cs, coll string
		if err := rows.Scan(&name, &colType, &dataType, &nullable, &key, &cs, &coll); err != nil {
			return nil, err
		}
		c := changeevent.Column{Name: name, SQLType: colType, Kind: changeevent.KindOf(dataType, colType),
			Nullable: nullable == "YES", PK: key == "PRI"}
		c.SetCharset(cs, coll)
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: %s.%s does not exist at %s", apply.ErrRefused, db, table, p.name)
	}
	return cols, nil
}

// peerVersion is a row's version at the peer.
type peerVersion struct {
	ts           int64
	domain       uint32
	seq          uint64
	origin, gtid string
}

// Scan reads every row of db.table in one consistent snapshot (REPEATABLE READ, START
// TRANSACTION WITH CONSISTENT SNAPSHOT): first the versions the peer's row_versions holds
// for the table, then the rows. A row without a recorded version (written at the peer
// outside MUSIC's view) gets version zero, older than any change: a streamed change of the
// row still wins over it here.
func (p *Peer) Scan(ctx context.Context, db, table string, batch int, fn func([]*changeevent.Event) error) error {
	cols, err := p.Columns(ctx, db, table)
	if err != nil {
		return err
	}
	pk := apply.PKColumns(cols)
	if len(pk) == 0 {
		return fmt.Errorf("%w: %s.%s has no primary key", apply.ErrRefused, db, table)
	}
	name, err := quoteTable(db, table)
	if err != nil {
		return err
	}
	names, err := quotedNames(cols)
	if err != nil {
		return err
	}
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// The snapshot session is not reused: the connection is closed, not pooled.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	}()
	for _, q := range []string{
		changeevent.ReadSession + ", tx_isolation='REPEATABLE-READ'",
		"START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("mariadb: snapshot at %s: %w", p.name, err)
		}
	}
	versions := map[[32]byte]peerVersion{}
	rs, err := conn.QueryContext(ctx, "SELECT pk_hash, ts_us, domain_id, seq, origin, gtid FROM "+p.meta+
		".row_versions WHERE db=? AND tbl=? AND deleted=0", db, table)
	switch {
	case errNumber(err) == 1146: // no metadata at the peer
	case err != nil:
		return fmt.Errorf("mariadb: read versions at %s: %w", p.name, err)
	default:
		for rs.Next() {
			var h []byte
			var v peerVersion
			if err := rs.Scan(&h, &v.ts, &v.domain, &v.seq, &v.origin, &v.gtid); err != nil {
				rs.Close()
				return err
			}
			var k [32]byte
			copy(k[:], h)
			versions[k] = v
		}
		err := rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("mariadb: read versions at %s: %w", p.name, err)
		}
	}
	rows, err := conn.QueryContext(ctx, "SELECT "+strings.Join(selectList(cols, names), ",")+" FROM "+name)
	if err != nil {
		return fmt.Errorf("mariadb: read %s at %s: %w", name, p.name, err)
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	var events []*changeevent.Event
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		after := changeevent.Row{}
		for i, c := range cols {
			v, err := changeevent.FromRaw(c, raw[i])
			if err != nil {
				return fmt.Errorf("%w: %s column %s at %s: %v", apply.ErrMalformed, name, c.Name, p.name, err)
			}
			after[c.Name] = v
		}
		key, err := apply.EncodeKey(pk, after)
		if err != nil {
			return err
		}
		v := versions[sha256.Sum256([]byte(key))]
		origin, gtid := v.origin, fmt.Sprintf("%d-0-%d", v.domain, v.seq)
		if origin == "" {
			origin = p.name
		}
		if g, err := apply.ParseGTID(v.gtid); err == nil && g.Domain == v.domain && g.Seq == v.seq {
			gtid = v.gtid
		}
		events = append(events, &changeevent.Event{Op: changeevent.OpRead, After: after, Columns: cols,
			Source: changeevent.Source{Connector: "music-peer", Name: origin, GTID: gtid,
				TsUs: v.ts, TsMs: v.ts / 1000, DB: db, Table: table, Snapshot: "true"}})
		if len(events) >= batch {
			if err := fn(events); err != nil {
				return err
			}
			events = nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mariadb: read %s at %s: %w", name, p.name, err)
	}
	if len(events) > 0 {
		return fn(events)
	}
	return nil
}
