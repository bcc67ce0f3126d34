package testenv

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// ZooKeeper returns the server list of the local topology's ZooKeeper, starting it if
// needed.
func ZooKeeper(t testing.TB) []string {
	t.Helper()
	tp := Local(t)
	ensure(t, "zookeeper", tp.ZKPort, filepath.Join(tp.Data, "zookeeper", "zookeeper.log"))
	return []string{fmt.Sprintf("127.0.0.1:%d", tp.ZKPort)}
}

// ZKConnect opens a ZooKeeper session, waits until it is connected, and closes it at
// cleanup.
func ZKConnect(t testing.TB) *zk.Conn {
	t.Helper()
	c, events, err := zk.Connect(ZooKeeper(t), 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatalf("testenv: zookeeper: %v", err)
	}
	t.Cleanup(c.Close)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return c
			}
		case <-deadline:
			t.Fatalf("testenv: zookeeper session not established within 20s")
		}
	}
}

// ZKRoot creates a fresh node /music-test/<unique> for this test's znodes and deletes it,
// with everything below it, at cleanup.
func ZKRoot(t testing.TB) string {
	t.Helper()
	c := ZKConnect(t)
	root := "/music-test/" + UniqueName(t)
	for _, p := range []string{"/music-test", root} {
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatalf("testenv: create %s: %v", p, err)
		}
	}
	t.Cleanup(func() { deleteTree(c, root) })
	return root
}

func deleteTree(c *zk.Conn, path string) {
	children, _, err := c.Children(path)
	if err != nil {
		return
	}
	for _, ch := range children {
		deleteTree(c, path+"/"+ch)
	}
	_ = c.Delete(path, -1)
}
