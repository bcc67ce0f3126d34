package mariadb

import "database/sql"

// Pool exposes the sink's connection pool to tests.
func (s *Sink) Pool() *sql.DB { return s.db }
