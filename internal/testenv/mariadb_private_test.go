package testenv

import "testing"

func TestPrivateMariaDB(t *testing.T) {
	s := NewPrivateMariaDB(t, "p", 9)
	var id int
	if err := s.Open(t, "").QueryRow("SELECT @@gtid_domain_id").Scan(&id); err != nil || id != 9 {
		t.Fatalf("domain %d, %v", id, err)
	}
}
