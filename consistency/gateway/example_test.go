package gateway_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/music-coord/music/consistency/gateway"
)

// ownAll is a Hooks that makes bank.* sync and lets every transaction run at once.
type ownAll struct{}

func (ownAll) IsSync(db, table string) bool { return db == "bank" || db == "*" }
func (ownAll) Acquire(ctx context.Context, conn uint32, tables []gateway.Table) error {
	return nil // the real one waits for ownership, or returns &gateway.SQLError{Code: 1205, ...}
}
func (ownAll) Committed(ctx context.Context, conn uint32, tables []gateway.Table, gtid string) error {
	return nil // the real one waits until gtid is durable in the MUSIC store
}
func (ownAll) Ended(conn uint32, tables []gateway.Table) {}

// A gateway on :3307 in front of the site's MariaDB on :3306; applications connect to
// :3307 as they would to MariaDB.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	gw, err := gateway.New(gateway.Config{Listen: "127.0.0.1:3307", Backend: "127.0.0.1:3306", Hooks: ownAll{}})
	if err != nil {
		log.Fatal(err)
	}
	if err := gw.Serve(ctx); err != nil { // returns after SIGTERM, once connections ended
		log.Fatal(err)
	}
}
