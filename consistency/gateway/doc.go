// Package gateway is a MySQL-protocol pass-through proxy in front of one site's MariaDB
// that tells Hooks when transactions touch sync tables (docs/SYNC_TABLES.md): before
// they use them (Acquire), when they commit (Committed, holding the client's response
// until the commit is durable), and when they end (Ended).
//
// Applications connect to the gateway instead of MariaDB, unchanged. Each client
// connection gets its own backend connection; packets are relayed as they are, except
// where this doc says otherwise.
//
// # Flow of a connection (conn.go)
//
//  1. Handshake: the gateway dials MariaDB and relays its greeting, the client's
//     handshake response and every authentication packet (auth switch, more data) in
//     both directions, so it never knows a password and any challenge-response plugin
//     (mysql_native_password, client_ed25519, ...) works. It masks the capabilities it
//     does not parse, in the greeting and in the response: CLIENT_COMPRESS,
//     CLIENT_LOCAL_FILES (LOAD DATA LOCAL is not supported), MySQL 8's optional
//     metadata, query attributes and zstd, MariaDB's COM_MULTI and metadata caching;
//     CLIENT_SSL unless Config.TLS is set. With TLS the client's SSLRequest is answered
//     with a TLS handshake; the handshake response read over TLS is relayed to MariaDB
//     over plain TCP. The hooks' conn is the backend's connection id (CONNECTION_ID()).
//  2. Commands: one goroutine takes the client's commands one by one; two pumps read
//     packets from each side (joining 16 MiB fragments, up to Config.MaxPacket), so a
//     side that closes is noticed at once, even between commands. For each command the
//     gateway finds the tables it touches (tables.go), calls Acquire if some are sync,
//     forwards it and follows the response packet by packet to its end (response.go:
//     OK, ERR, text and binary result sets, several results, prepare responses, with
//     and without CLIENT_DEPRECATE_EOF). COM_STMT_SEND_LONG_DATA and COM_STMT_CLOSE get
//     no response; replication commands are refused.
//  3. Transactions (txn.go): the server status of every OK/EOF says whether the session
//     is in a transaction. A transaction that called Acquire ends at an OK/EOF without
//     SERVER_STATUS_IN_TRANS, or perhaps at an ERR (a deadlock rolls back): from that
//     packet the rest of the response is held. Once the response is complete the
//     gateway runs its own query on the backend connection,
//     SELECT @@in_transaction, @@last_gtid, and compares the GTID with the one read
//     before the transaction's first Acquire. If it moved, the transaction committed:
//     Committed(tables, gtid), then the held packets go to the client (or one ERR instead
//     if Committed failed). Then, if no transaction is open any more, Ended. A client or
//     backend that goes away mid-transaction ends it too (Ended, after the backend
//     connection is closed, so MariaDB rolls it back).
//
// An autocommit statement on a sync table is a transaction of one command. Implicit
// commits (DDL, SET autocommit=1, LOCK TABLES) are seen like COMMIT. COM_CHANGE_USER and
// COM_RESET_CONNECTION roll back. XA transactions may not use sync tables (ERR 1399):
// their commit may come from another connection.
//
// # Tables of a statement
//
// COM_QUERY and COM_STMT_PREPARE text is parsed with the TiDB parser; every table named
// (read or written) counts, qualified with the current database (from the handshake,
// COM_INIT_DB, USE, COM_CHANGE_USER; asked of the backend when unclear). A prepared
// statement's tables are remembered by statement id (and MariaDB's id -1, "the last
// prepared") and acquired at each COM_STMT_EXECUTE and COM_STMT_BULK_EXECUTE (not at
// COM_STMT_FETCH: MariaDB reads a cursor's rows into a temporary table when it opens it);
// SQL-level PREPARE ... FROM '...' / EXECUTE likewise by name.
// When the tables cannot be known the gateway uses wildcards, and the hooks must read
// them so: Table{DB: db, Name: "*"} is every sync table of db (a statement the parser
// refuses, such as MariaDB-only syntax like RETURNING; EXECUTE of an unknown or
// PREPARE ... FROM @var statement); Table{DB: "*", Name: "*"} is every sync table (a
// statement without a current database that the parser refuses; CALL of a procedure).
// The gateway asks IsSync(db, "*") and IsSync("*", "*") before acquiring wildcards.
//
// Not seen, so not acquired: tables reached through views, triggers and stored functions
// (IsSync should report a view or a table whose triggers write sync tables as sync), and
// sequences used through NEXTVAL().
//
// # What the hook implementer must know
//
//   - Calls for one conn never overlap; different conns call concurrently. IsSync is
//     called for every table of every statement: keep it fast.
//   - Acquire is called once per transaction for each table (with the tables of a
//     statement not acquired yet); Ended gets every table acquired, or none when every
//     Acquire of the transaction failed. A refused statement does not end a transaction
//     the client opened with BEGIN: it may retry.
//   - Committed's gtid is the session's @@last_gtid after the command: a multi-statement
//     command or an implicit commit (DDL) may commit more than once, and only the last
//     GTID is given; the earlier ones precede it in the same GTID domain.
//   - A backend connection lost while a COMMIT was in flight leaves the outcome unknown:
//     the gateway calls Ended without Committed.
//   - Committed may come more than once before Ended: COMMIT AND CHAIN, BEGIN inside a
//     transaction, or "COMMIT; BEGIN; ..." in one command commit and open the next
//     transaction at once; it keeps the tables acquired. It is not called for a
//     transaction whose every Acquire failed.
//   - The gateway's own queries run between client commands, so a client that asks for
//     ROW_COUNT() or FOUND_ROWS() right after a statement that ended a sync transaction
//     sees the values of the gateway's SELECT (SHOW WARNINGS is unaffected: that SELECT
//     reads no table).
//   - Names are as the client wrote them (case and all); IsSync decides how to compare.
//   - conn is the id MariaDB gave the backend connection and the client sees as its own,
//     so KILL and KILL QUERY sent through the gateway (JDBC's Statement.cancel) work.
//
// # Costs and limits
//
// Without hooks the gateway only relays. With hooks every COM_QUERY and COM_STMT_PREPARE
// is parsed (about 1 s for a 40 MB statement) and a transaction that acquired tables
// costs one extra round trip at its end (two if another command ran since the last one
// ended). A held response is buffered in memory: a multi-statement command that commits
// and then returns a large result set holds all of it until Committed returns. Not
// supported: LOAD DATA LOCAL INFILE, protocol compression, replication commands
// (COM_BINLOG_DUMP, COM_REGISTER_SLAVE), MySQL 8 query attributes.
package gateway
