package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/music-coord/music/internal/testenv"
)

func TestAuthentication(t *testing.T) {
	site := testenv.Sites(t)[0]
	db := testenv.NewDatabase(t, site)
	admin := site.Open(t, "")
	user := testenv.UniqueName(t)
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('s3cret')", user),
		fmt.Sprintf("GRANT ALL ON `%s`.* TO '%s'@'%%'", db, user),
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _, _ = admin.Exec(fmt.Sprintf("DROP USER '%s'@'%%'", user)) })

	plain := startGateway(t, Config{Backend: site.Addr()})
	tlsGW := startGateway(t, Config{Backend: site.Addr(), TLS: serverTLS(t)})
	if err := mysql.RegisterTLSConfig("gateway-test", &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, addr, tls, password string
		wantErr                   uint16
	}{
		{"password", plain.Addr(), "", "s3cret", 0},
		{"wrong password", plain.Addr(), "", "wrong", 1045},
		{"no password", plain.Addr(), "", "", 1045},
		{"tls password", tlsGW.Addr(), "gateway-test", "s3cret", 0},
		{"tls wrong password", tlsGW.Addr(), "gateway-test", "wrong", 1045},
		{"tls offered, plain client", tlsGW.Addr(), "", "s3cret", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mysql.NewConfig()
			c.User, c.Passwd, c.Net, c.Addr, c.DBName, c.TLSConfig = user, tc.password, "tcp", tc.addr, db, tc.tls
			pool, err := sql.Open("mysql", c.FormatDSN())
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var who, cipher string
			err = pool.QueryRow("SELECT CURRENT_USER(), DATABASE()").Scan(&who, &cipher)
			var me *mysql.MySQLError
			switch {
			case tc.wantErr == 0 && err != nil:
				t.Fatalf("login: %v", err)
			case tc.wantErr != 0 && (!errors.As(err, &me) || me.Number != tc.wantErr):
				t.Fatalf("login: got %v, want error %d", err, tc.wantErr)
			case tc.wantErr == 0 && (who != user+"@%" || cipher != db):
				t.Fatalf("logged in as %s in %s", who, cipher)
			}
		})
	}
	// A TLS gateway refuses nothing else; a plain one has no TLS to offer.
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.TLSConfig = user, "s3cret", "tcp", plain.Addr(), "gateway-test"
	pool, _ := sql.Open("mysql", c.FormatDSN())
	defer pool.Close()
	if err := pool.Ping(); err == nil {
		t.Fatal("TLS through a gateway without TLS: no error")
	}
}

// serverTLS is a self-signed certificate for 127.0.0.1.
func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
