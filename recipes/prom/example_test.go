package prom_test

import (
	"context"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/music-coord/music/recipes/prom"
)

// A gateway wraps each transaction on a sync table in Use; the hooks catch up with the
// previous owner and record the last commit before yielding. (Not run: needs ZooKeeper.)
func ExampleManager_Use() {
	conn, _, err := zk.Connect([]string{"127.0.0.1:22181"}, 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	m, err := prom.New(conn, "dc1", prom.Options{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	m.OnAcquire(func(ctx context.Context, now, prev prom.Ownership) error {
		fmt.Printf("catch up with %s's commits up to fence %d\n", prev.Site, prev.Fence)
		return nil
	})
	m.BeforeYield(func(o prom.Ownership) { fmt.Println("write the last commit position of", o.Resource) })
	m.OnLost(func(o prom.Ownership) { fmt.Println("lost", o.Resource, "fence", o.Fence) })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o, release, err := m.Use(ctx, "bank.accounts")
	if err != nil {
		panic(err) // a *prom.BusyError names the owner: ERROR 1205 to the client
	}
	defer release()
	fmt.Println("run the transaction with @music_gateway_fence =", o.Fence)
}
