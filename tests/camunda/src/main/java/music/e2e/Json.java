package music.e2e;

import java.util.Map;

/** Json writes one flat JSON object per line on stdout: the programs' results, which the Go tests read. */
final class Json {
  private Json() {}

  /** line prints the keys and values in order (String, Number or Boolean values). */
  static synchronized void line(Object... kv) {
    StringBuilder b = new StringBuilder("{");
    for (int i = 0; i + 1 < kv.length; i += 2) {
      if (i > 0) {
        b.append(',');
      }
      quote(b, String.valueOf(kv[i]));
      b.append(':');
      Object v = kv[i + 1];
      if (v instanceof Number || v instanceof Boolean) {
        b.append(v);
      } else if (v == null) {
        b.append("null");
      } else {
        quote(b, String.valueOf(v));
      }
    }
    System.out.println(b.append('}'));
    System.out.flush();
  }

  private static final Map<Character, String> ESC = Map.of('"', "\\\"", '\\', "\\\\", '\n', "\\n", '\r', "\\r", '\t', "\\t");

  private static void quote(StringBuilder b, String s) {
    b.append('"');
    for (char c : s.toCharArray()) {
      String e = ESC.get(c);
      if (e != null) {
        b.append(e);
      } else if (c < 0x20) {
        b.append(String.format("\\u%04x", (int) c));
      } else {
        b.append(c);
      }
    }
    b.append('"');
  }

  /** describe is an exception's chain of classes and messages, with SQL error codes and states. */
  static String describe(Throwable e) {
    StringBuilder b = new StringBuilder();
    for (Throwable c = e; c != null; c = c.getCause() == c ? null : c.getCause()) {
      if (b.length() > 0) {
        b.append(" <- ");
      }
      b.append(c.getClass().getSimpleName());
      if (c instanceof java.sql.SQLException se) {
        b.append('[').append(se.getErrorCode()).append('/').append(se.getSQLState()).append(']');
      }
      b.append(": ").append(c.getMessage());
    }
    return b.toString();
  }
}
