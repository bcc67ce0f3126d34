package mariadb

import (
	"fmt"
	"strings"

	"github.com/music-coord/music/apply"
)

// quote returns name as a backtick-quoted identifier, refusing names MariaDB could not
// hold or that could escape the quotes.
func quote(name string) (string, error) {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "`\x00") {
		return "", fmt.Errorf("%w: identifier %q cannot be quoted safely", apply.ErrRefused, name)
	}
	return "`" + name + "`", nil
}

// quoteTable returns `db`.`table`.
func quoteTable(db, table string) (string, error) {
	d, err := quote(db)
	if err != nil {
		return "", err
	}
	t, err := quote(table)
	if err != nil {
		return "", err
	}
	return d + "." + t, nil
}

// placeholders returns "(?,?,?)" for n values.
func placeholders(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

// ValidIdentifier reports whether name can be used as a schema or table name.
func ValidIdentifier(name string) error {
	_, err := quote(name)
	return err
}
