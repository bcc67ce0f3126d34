package gateway

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/music-coord/music/internal/testenv"
)

// BenchmarkGateway compares a point SELECT and an autocommit UPDATE of a sync table
// straight at MariaDB and through the gateway (without and with hooks).
//
//	go test -run x -bench Gateway -benchtime 2000x ./consistency/gateway/
func BenchmarkGateway(b *testing.B) {
	site := testenv.Sites(b)[0]
	dbName := testenv.NewDatabase(b, site)
	if _, err := site.Open(b, dbName).Exec("CREATE TABLE acct (id INT PRIMARY KEY, bal INT); INSERT INTO acct VALUES (1, 0)"); err != nil {
		b.Fatal(err)
	}
	plain := startGateway(b, Config{Backend: site.Addr()})
	hooked := startGateway(b, Config{Backend: site.Addr(), Hooks: &nopHooks{}})
	for _, target := range []struct{ name, addr string }{
		{"direct", site.Addr()}, {"gateway", plain.Addr()}, {"gateway+hooks", hooked.Addr()},
	} {
		c := mysql.NewConfig()
		c.User, c.Net, c.Addr, c.DBName, c.InterpolateParams = "root", "tcp", target.addr, dbName, true
		db, err := sql.Open("mysql", c.FormatDSN())
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		for _, q := range []string{"SELECT bal FROM acct WHERE id = ?", "UPDATE acct SET bal = bal + 1 WHERE id = ?"} {
			b.Run(target.name+"/"+q[:6], func(b *testing.B) {
				for b.Loop() {
					rows, err := db.QueryContext(context.Background(), q, 1)
					if err != nil {
						b.Fatal(err)
					}
					rows.Close()
				}
			})
		}
		db.Close()
	}
}

// nopHooks makes every table sync and allows everything at once.
type nopHooks struct{}

func (nopHooks) IsSync(string, string) bool                               { return true }
func (nopHooks) Acquire(context.Context, uint32, []Table) error           { return nil }
func (nopHooks) Committed(context.Context, uint32, []Table, string) error { return nil }
func (nopHooks) Ended(uint32, []Table)                                    {}
