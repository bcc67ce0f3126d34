package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Site is one site's MariaDB.
type Site struct {
	Name     string // a, b, c, ...
	Index    int    // 1-based: the site's server_id and gtid_domain_id
	Host     string
	Port     int
	User     string
	Password string
}

// Addr is host:port.
func (s Site) Addr() string { return fmt.Sprintf("%s:%d", s.Host, s.Port) }

// DSN is a go-sql-driver DSN for database db ("" for none).
func (s Site) DSN(db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = s.User, s.Password, "tcp", s.Addr(), db
	c.ParseTime = true
	c.Loc = time.UTC
	c.MultiStatements = true
	c.Params = map[string]string{"time_zone": "'+00:00'"}
	return c.FormatDSN()
}

// Open opens a connection pool to database db and closes it at cleanup.
func (s Site) Open(t testing.TB, db string) *sql.DB {
	t.Helper()
	pool, err := sql.Open("mysql", s.DSN(db))
	if err != nil {
		t.Fatalf("testenv: mariadb site %s: %v", s.Name, err)
	}
	t.Cleanup(func() { pool.Close() })
	return pool
}

// Sites returns every site's MariaDB, starting them if needed.
func Sites(t testing.TB) []Site {
	t.Helper()
	tp := Local(t)
	var sites []Site
	for i, name := range tp.Sites {
		s := Site{Name: name, Index: i + 1, Host: "127.0.0.1", Port: tp.MariaDBPortBase + i, User: "root"}
		ensure(t, "mariadb", s.Port, filepath.Join(tp.Data, "mariadb-"+name, "error.log"))
		sites = append(sites, s)
	}
	return sites
}

// NewDatabase creates a fresh, uniquely named database at every site and drops it at
// cleanup. It returns the name.
func NewDatabase(t testing.TB, sites ...Site) string {
	t.Helper()
	name := UniqueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range sites {
		pool := s.Open(t, "")
		if _, err := pool.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
			t.Fatalf("testenv: create database %s at site %s: %v", name, s.Name, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := pool.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
				t.Logf("testenv: drop database %s at site %s: %v", name, s.Name, err)
			}
		})
	}
	return name
}
