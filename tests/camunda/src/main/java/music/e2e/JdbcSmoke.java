package music.e2e;

import java.io.ByteArrayInputStream;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HexFormat;
import java.util.Random;

/**
 * JdbcSmoke runs MariaDB Connector/J through a `music gateway` as an application would: logins
 * (root without password, a user with a mysql_native_password password, a wrong password),
 * server-side and client-side prepared statements, explicit transactions with SELECT ... FOR
 * UPDATE, autocommit, batches, multi-statements and 20 MiB BLOB parameters, on a sync table and
 * on an async table, and a transaction over both.
 *
 * <p>Usage: JdbcSmoke HOST:PORT DB SYNC_TABLE ASYNC_TABLE USER PASSWORD. The tables are
 * (id INT PRIMARY KEY, v BIGINT NOT NULL, note VARCHAR(100), b LONGBLOB), empty. Every check
 * prints one JSON line {"check", "ok", "ms", "error"}; the exit code is 0 when all passed.
 */
public final class JdbcSmoke {
  private static final int BLOB = 20 << 20;

  private final String hostPort;
  private final String db;
  private final String user;
  private final String password;
  private int failed;

  private JdbcSmoke(String hostPort, String db, String user, String password) {
    this.hostPort = hostPort;
    this.db = db;
    this.user = user;
    this.password = password;
  }

  public static void main(String[] args) {
    if (args.length != 6) {
      System.err.println("usage: JdbcSmoke HOST:PORT DB SYNC_TABLE ASYNC_TABLE USER PASSWORD");
      System.exit(2);
    }
    JdbcSmoke s = new JdbcSmoke(args[0], args[1], args[4], args[5]);
    s.logins();
    String[] tables = {args[2], args[3]};
    for (int ti = 0; ti < tables.length; ti++) {
      for (boolean server : new boolean[] {true, false}) {
        s.statements(tables[ti], server, (ti * 2 + (server ? 0 : 1)) * 1000);
      }
      s.multiStatements(tables[ti], 4000 + ti * 1000);
    }
    s.bothTables(args[2], args[3]);
    Json.line("done", true, "failed", s.failed);
    System.exit(s.failed == 0 ? 0 : 1);
  }

  private interface Check {
    /** run returns a detail to print, or throws. */
    String run() throws Exception;
  }

  private void check(String name, Check c) {
    long t0 = System.nanoTime();
    String detail = null;
    String err = null;
    try {
      detail = c.run();
    } catch (Throwable e) {
      err = Json.describe(e);
      failed++;
    }
    Json.line("check", name, "ok", err == null, "ms", (System.nanoTime() - t0) / 1_000_000, "detail", detail, "error", err);
  }

  private String url(String options) {
    return "jdbc:mariadb://" + hostPort + "/" + db + (options.isEmpty() ? "" : "?" + options);
  }

  private Connection root(String options) throws SQLException {
    return DriverManager.getConnection(url(options), "root", "");
  }

  private static void expect(boolean cond, String what) {
    if (!cond) {
      throw new IllegalStateException(what);
    }
  }

  private static String one(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      expect(rs.next(), "no row for " + sql);
      return rs.getString(1);
    }
  }

  private void logins() {
    check("login/root-no-password", () -> {
      try (Connection c = root("")) {
        String u = one(c, "SELECT CURRENT_USER()");
        expect(u.startsWith("root@"), "current user " + u);
        return u;
      }
    });
    check("login/native-password", () -> {
      try (Connection c = DriverManager.getConnection(url(""), user, password)) {
        String u = one(c, "SELECT CURRENT_USER()");
        expect(u.startsWith(user + "@"), "current user " + u);
        return u;
      }
    });
    check("login/wrong-password-refused", () -> {
      try (Connection c = DriverManager.getConnection(url(""), user, password + "-wrong")) {
        throw new IllegalStateException("a wrong password was accepted");
      } catch (SQLException e) {
        expect(e.getErrorCode() == 1045, "error " + Json.describe(e));
        return e.getErrorCode() + " " + e.getMessage();
      }
    });
  }

  /** statements checks one table with server-side or client-side prepared statements, ids from base. */
  private void statements(String table, boolean server, int base) {
    String prefix = table + "/" + (server ? "server-prep" : "client-prep") + "/";
    String opts = "useServerPrepStmts=" + server;
    check(prefix + "autocommit", () -> {
      try (Connection c = root(opts)) {
        expect(c.getAutoCommit(), "autocommit off");
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + table + " (id, v, note) VALUES (?, ?, ?)")) {
          for (int i = 1; i <= 5; i++) {
            ins.setInt(1, base + i);
            ins.setLong(2, i * 10L);
            ins.setString(3, "row " + i + " é");
            expect(ins.executeUpdate() == 1, "insert count");
          }
        }
        try (PreparedStatement sel = c.prepareStatement("SELECT v, note FROM " + table + " WHERE id = ?")) {
          sel.setInt(1, base + 3);
          try (ResultSet rs = sel.executeQuery()) {
            expect(rs.next() && rs.getLong(1) == 30 && "row 3 é".equals(rs.getString(2)), "read back row 3");
          }
        }
        return null;
      }
    });
    check(prefix + "for-update-commit-rollback", () -> {
      try (Connection c = root(opts)) {
        c.setAutoCommit(false);
        long v = forUpdate(c, table, base + 1);
        update(c, table, base + 1, v + 1);
        c.commit();
        forUpdate(c, table, base + 1);
        update(c, table, base + 1, v + 100);
        c.rollback();
        long after = forUpdate(c, table, base + 1);
        c.commit();
        expect(after == v + 1, "after commit and rollback v=" + after + ", want " + (v + 1));
        c.setAutoCommit(true);
        return "v " + v + " -> " + after;
      }
    });
    check(prefix + "batch", () -> {
      try (Connection c = root(opts)) {
        c.setAutoCommit(false);
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)")) {
          for (int i = 100; i < 150; i++) {
            ins.setInt(1, base + i);
            ins.setLong(2, i);
            ins.addBatch();
          }
          ins.executeBatch();
        }
        try (PreparedStatement upd = c.prepareStatement("UPDATE " + table + " SET v = v + 1 WHERE id = ?")) {
          for (int i = 100; i < 150; i += 2) {
            upd.setInt(1, base + i);
            upd.addBatch();
          }
          upd.executeBatch();
        }
        c.commit();
        c.setAutoCommit(true);
        String n = one(c, "SELECT COUNT(*) FROM " + table + " WHERE id BETWEEN " + (base + 100) + " AND " + (base + 149));
        expect("50".equals(n), "rows after batch " + n);
        return n;
      }
    });
    check(prefix + "blob-20MiB", () -> blob(opts, table, base + 900, false));
    check(prefix + "blob-20MiB-stream", () -> blob(opts, table, base + 901, true));
  }

  private static long forUpdate(Connection c, String table, int id) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement("SELECT v FROM " + table + " WHERE id = ? FOR UPDATE")) {
      ps.setInt(1, id);
      try (ResultSet rs = ps.executeQuery()) {
        expect(rs.next(), "row " + id + " missing");
        return rs.getLong(1);
      }
    }
  }

  private static void update(Connection c, String table, int id, long v) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement("UPDATE " + table + " SET v = ? WHERE id = ?")) {
      ps.setLong(1, v);
      ps.setInt(2, id);
      expect(ps.executeUpdate() == 1, "update count");
    }
  }

  /** blob writes 20 MiB of random bytes as a parameter (bytes, or a stream), reads them back and compares. */
  private String blob(String opts, String table, int id, boolean stream) throws Exception {
    byte[] data = new byte[BLOB];
    new Random(id).nextBytes(data);
    String want = sha256(data);
    try (Connection c = root(opts)) {
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table + " (id, v, b) VALUES (?, ?, ?)")) {
        ps.setInt(1, id);
        ps.setLong(2, data.length);
        if (stream) {
          ps.setBinaryStream(3, new ByteArrayInputStream(data), data.length);
        } else {
          ps.setBytes(3, data);
        }
        expect(ps.executeUpdate() == 1, "insert count");
      }
      try (PreparedStatement ps = c.prepareStatement("SELECT b FROM " + table + " WHERE id = ?")) {
        ps.setInt(1, id);
        try (ResultSet rs = ps.executeQuery()) {
          expect(rs.next(), "blob row missing");
          String got = sha256(rs.getBytes(1));
          expect(want.equals(got), "read back sha256 " + got + ", want " + want);
        }
      }
      return "sha256 " + want;
    }
  }

  private static String sha256(byte[] b) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
  }

  /** multiStatements sends several statements in one COM_QUERY (allowMultiQueries=true). */
  private void multiStatements(String table, int base) {
    check(table + "/multi-statement", () -> {
      try (Connection c = root("allowMultiQueries=true"); Statement st = c.createStatement()) {
        boolean rs = st.execute("INSERT INTO " + table + " (id, v) VALUES (" + (base + 1) + ", 1); "
            + "UPDATE " + table + " SET v = v + 1 WHERE id = " + (base + 1) + "; "
            + "SELECT v FROM " + table + " WHERE id = " + (base + 1));
        expect(!rs && st.getUpdateCount() == 1, "first result: insert count");
        expect(!st.getMoreResults() && st.getUpdateCount() == 1, "second result: update count");
        expect(st.getMoreResults(), "third result: a result set");
        try (ResultSet r = st.getResultSet()) {
          expect(r.next() && r.getLong(1) == 2, "v after the multi-statement");
        }
        expect(!st.getMoreResults() && st.getUpdateCount() == -1, "no fourth result");
        return null;
      }
    });
    check(table + "/multi-statement-transaction", () -> {
      try (Connection c = root("allowMultiQueries=true"); Statement st = c.createStatement()) {
        st.execute("START TRANSACTION; SELECT v FROM " + table + " WHERE id = " + (base + 1) + " FOR UPDATE; "
            + "UPDATE " + table + " SET v = v * 10 WHERE id = " + (base + 1) + "; COMMIT");
        while (st.getMoreResults() || st.getUpdateCount() != -1) {
          // drain every result
        }
        st.execute("START TRANSACTION; UPDATE " + table + " SET v = 0 WHERE id = " + (base + 1) + "; ROLLBACK");
        while (st.getMoreResults() || st.getUpdateCount() != -1) {
          // drain
        }
        String v = one(c, "SELECT v FROM " + table + " WHERE id = " + (base + 1));
        expect("20".equals(v), "v " + v + ", want 20");
        return v;
      }
    });
  }

  /** bothTables moves a value from the async table to the sync table in one transaction. */
  private void bothTables(String sync, String async) {
    check("both-tables/transaction", () -> {
      try (Connection c = root("useServerPrepStmts=true")) {
        c.setAutoCommit(false);
        try (Statement st = c.createStatement()) {
          st.executeUpdate("INSERT INTO " + sync + " (id, v) VALUES (9000, 0)");
          st.executeUpdate("INSERT INTO " + async + " (id, v) VALUES (9000, 7)");
        }
        c.commit();
        long a = forUpdate(c, async, 9000);
        long s = forUpdate(c, sync, 9000);
        update(c, async, 9000, 0);
        update(c, sync, 9000, s + a);
        c.commit();
        c.setAutoCommit(true);
        String v = one(c, "SELECT CONCAT((SELECT v FROM " + sync + " WHERE id = 9000), '/', (SELECT v FROM " + async + " WHERE id = 9000))");
        expect("7/0".equals(v), "sync/async after the move " + v);
        return v;
      }
    });
  }
}
