package ddl

import (
	"fmt"
	"reflect"
	"testing"
)

func n(db, t string) Name { return Name{db, t} }

func TestParse(t *testing.T) {
	type want struct {
		kind, verb string
		tables     []Name
		renames    []Rename
		cols       []ColumnRename
		pk         bool
		db         string
		like       string
		sel        bool
		replace    bool
	}
	for _, c := range []struct {
		stmt string
		w    want
	}{
		// ALTER TABLE forms
		{"ALTER TABLE t ADD COLUMN c INT", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD c INT NOT NULL DEFAULT 3 AFTER b, ADD d TEXT FIRST", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD COLUMN (c INT, d INT)", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t DROP COLUMN c", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t DROP c, DROP d", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t MODIFY COLUMN c BIGINT UNSIGNED NULL", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ALTER COLUMN c SET DEFAULT 5", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t RENAME COLUMN a TO a2", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}, cols: []ColumnRename{{"a", "a2"}}}},
		{"ALTER TABLE t CHANGE a a2 VARCHAR(20)", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}, cols: []ColumnRename{{"a", "a2"}}}},
		{"ALTER TABLE t CHANGE COLUMN a a VARCHAR(20)", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t RENAME TO t2", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t"), n("s", "t2")}, renames: []Rename{{n("s", "t"), n("s", "t2")}}}},
		{"ALTER TABLE t RENAME AS o.t2, ADD z INT", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t"), n("o", "t2")}, renames: []Rename{{n("s", "t"), n("o", "t2")}}}},
		{"ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, k)", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}, pk: true}},
		{"ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY (id)", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}, pk: true}},
		{"ALTER TABLE t MODIFY id INT NOT NULL PRIMARY KEY", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}, pk: true}},
		{"ALTER TABLE t DROP INDEX `PRIMARY`", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}, pk: true}},
		{"ALTER TABLE t ADD INDEX i (c), ADD UNIQUE KEY u (d), DROP INDEX j, RENAME INDEX k TO k2", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES p(id), DROP FOREIGN KEY fk0", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD CONSTRAINT ck CHECK (c > 0)", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ENGINE=InnoDB, CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t COMMENT='x', AUTO_INCREMENT=100, ALGORITHM=INPLACE, LOCK=NONE", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t FORCE", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ORDER BY c", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT, DROP COLUMN IF EXISTS d", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER ONLINE TABLE t ADD c INT", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t WAIT 5 ADD c INT", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD SYSTEM VERSIONING", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD c INT INVISIBLE", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		// names: quoted, qualified, comments, odd identifiers
		{"ALTER TABLE `my db`.`ta``b` ADD c INT", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("my db", "ta`b")}}},
		{"/* c1 */ ALTER /* c2 */ TABLE -- c3\n `COLUMN` ADD c INT # c4", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "COLUMN")}}},
		{"alter table o . t add c int", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("o", "t")}}},
		// CREATE TABLE forms
		{"CREATE TABLE t (id INT PRIMARY KEY, v TEXT)", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t")}}},
		{"CREATE TABLE IF NOT EXISTS o.t (id INT PRIMARY KEY)", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("o", "t")}}},
		{"CREATE TABLE t2 LIKE o.t1", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t2")}, like: "o.t1"}},
		{"CREATE TABLE t2 AS SELECT * FROM t1", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t2")}, sel: true}},
		{"CREATE TABLE t2 (PRIMARY KEY (id)) SELECT id, v FROM t1 WHERE id > 3", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t2")}, sel: true}},
		{"CREATE TABLE t2 (id INT PRIMARY KEY) IGNORE SELECT id FROM t1", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t2")}, sel: true}},
		{"CREATE OR REPLACE TABLE t (id INT PRIMARY KEY)", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t")}, replace: true}},
		{"CREATE TABLE t (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t")}}},
		{"CREATE TEMPORARY TABLE t (id INT)", want{}},
		{"CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `v` varchar(10) DEFAULT NULL\n)", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t")}}},
		{"CREATE TABLE t (id INT PRIMARY KEY, `uuid` UUID, a INET6, b inet4) ENCRYPTED=YES ENCRYPTION_KEY_ID=2", want{kind: CreateTable, verb: "CREATE", tables: []Name{n("s", "t")}}},
		{"ALTER TABLE t ADD COLUMN u UUID, ALGORITHM=NOCOPY", want{kind: AlterTable, verb: "ALTER", tables: []Name{n("s", "t")}}},
		// DROP, TRUNCATE, RENAME
		{"DROP TABLE t", want{kind: DropTable, verb: "DROP", tables: []Name{n("s", "t")}}},
		{"DROP TABLE IF EXISTS `s`.`a`, b, o.c /* generated by server */", want{kind: DropTable, verb: "DROP", tables: []Name{n("s", "a"), n("s", "b"), n("o", "c")}}},
		{"DROP TEMPORARY TABLE IF EXISTS t", want{}},
		{"TRUNCATE TABLE t", want{kind: TruncateTable, verb: "TRUNCATE", tables: []Name{n("s", "t")}}},
		{"TRUNCATE o.t", want{kind: TruncateTable, verb: "TRUNCATE", tables: []Name{n("o", "t")}}},
		{"RENAME TABLE r1 TO r1n", want{kind: RenameTable, verb: "RENAME", tables: []Name{n("s", "r1"), n("s", "r1n")}, renames: []Rename{{n("s", "r1"), n("s", "r1n")}}}},
		{"RENAME TABLE r1n TO tmp, r2 TO r1n, tmp TO r2", want{kind: RenameTable, verb: "RENAME",
			tables:  []Name{n("s", "r1n"), n("s", "tmp"), n("s", "r2"), n("s", "r1n"), n("s", "tmp"), n("s", "r2")},
			renames: []Rename{{n("s", "r1n"), n("s", "tmp")}, {n("s", "r2"), n("s", "r1n")}, {n("s", "tmp"), n("s", "r2")}}}},
		{"RENAME TABLE `a`.`x` TO `b`.`x`", want{kind: RenameTable, verb: "RENAME", tables: []Name{n("a", "x"), n("b", "x")}, renames: []Rename{{n("a", "x"), n("b", "x")}}}},
		{"RENAME TABLE t WAIT 3 TO t2", want{kind: RenameTable, verb: "RENAME", tables: []Name{n("s", "t"), n("s", "t2")}, renames: []Rename{{n("s", "t"), n("s", "t2")}}}},
		// indexes
		{"CREATE INDEX i ON t (c)", want{kind: CreateIndex, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"CREATE UNIQUE INDEX i ON o.t (c)", want{kind: CreateIndex, verb: "ALTER", tables: []Name{n("o", "t")}}},
		{"DROP INDEX i ON t", want{kind: DropIndex, verb: "ALTER", tables: []Name{n("s", "t")}}},
		{"DROP INDEX `PRIMARY` ON t", want{kind: DropIndex, verb: "ALTER", tables: []Name{n("s", "t")}, pk: true}},
		// databases
		{"CREATE DATABASE d2", want{kind: CreateDatabase, verb: CreateDatabase, db: "d2"}},
		{"CREATE SCHEMA IF NOT EXISTS `d 2` CHARACTER SET utf8mb4", want{kind: CreateDatabase, verb: CreateDatabase, db: "d 2"}},
		{"CREATE OR REPLACE DATABASE d2", want{kind: CreateDatabase, verb: CreateDatabase, db: "d2", replace: true}},
		{"ALTER DATABASE d2 CHARACTER SET latin1", want{kind: AlterDatabase, verb: AlterDatabase, db: "d2"}},
		{"ALTER DATABASE COLLATE utf8mb4_bin", want{kind: AlterDatabase, verb: AlterDatabase, db: "s"}},
		{"DROP DATABASE IF EXISTS d2", want{kind: DropDatabase, verb: DropDatabase, db: "d2"}},
		{"DROP SCHEMA d2", want{kind: DropDatabase, verb: DropDatabase, db: "d2"}},
		// sequences (tables in MariaDB)
		{"CREATE SEQUENCE sq START WITH 10 INCREMENT BY 2", want{kind: CreateSequence, verb: "CREATE", tables: []Name{n("s", "sq")}}},
		{"DROP SEQUENCE sq", want{kind: DropSequence, verb: "DROP", tables: []Name{n("s", "sq")}}},
		// not schema changes of mirrored data
		{"CREATE VIEW v AS SELECT 1", want{}},
		{"CREATE OR REPLACE DEFINER=`root`@`localhost` VIEW v AS SELECT 1", want{}},
		{"DROP VIEW v", want{}},
		{"CREATE USER u IDENTIFIED BY 'p'", want{}},
		{"GRANT SELECT ON *.* TO u", want{}},
		{"CREATE DEFINER=`root`@`localhost` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.c = 1", want{}},
		{"DROP TRIGGER IF EXISTS tr", want{}},
		{"CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN SELECT 1; END", want{}},
		{"ANALYZE TABLE t", want{}},
		{"OPTIMIZE TABLE t", want{}},
		{"SAVEPOINT x", want{}},
		// MariaDB-only syntax the parser does not take even normalised: opaque
		{"CREATE TABLE t (id INT PRIMARY KEY, v INT) PAGE_CHECKSUM=1 TRANSACTIONAL=1 WEIRD_OPTION", want{kind: Opaque, verb: Opaque}},
		{"ALTER TABLE t ADD PERIOD FOR p(s, e) ADD c INT ZZZ", want{kind: Opaque, verb: Opaque}},
	} {
		got := Parse("s", c.stmt)
		w := c.w
		g := want{kind: got.Kind, verb: got.Verb, tables: got.Tables, renames: got.Renames, cols: got.ColumnRenames,
			pk: got.PrimaryKey, db: got.Database, like: likeOf(got), sel: got.Select, replace: got.Replace}
		if !reflect.DeepEqual(fmt.Sprint(g), fmt.Sprint(w)) {
			t.Errorf("%q:\n got  %+v (err %v)\n want %+v", c.stmt, g, got.Err, w)
		}
	}
}

func likeOf(i *Info) string {
	if i.Like == nil {
		return ""
	}
	return i.Like.String()
}
