-- MUSIC's torture script: loaded at one site, then every table must be identical at every
-- site and in the MUSIC store. One statement per ';' at the end of a line.
CREATE TABLE types (
  id BIGINT UNSIGNED PRIMARY KEY,
  ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, i INT, bi BIGINT,
  bit1 BIT(1), bit64 BIT(64),
  dec1 DECIMAL(65,30), dec2 DECIMAL(10,0) UNSIGNED,
  f FLOAT, d DOUBLE,
  dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(3) NULL, y YEAR,
  c CHAR(10), vc VARCHAR(200), tx TEXT, mt MEDIUMTEXT,
  bin BINARY(8), vb VARBINARY(64), bl BLOB, lb LONGBLOB,
  e ENUM('a','b','c'), st SET('x','y','z'),
  j JSON, ip6 INET6, u UUID, ip4 INET4,
  gen_v BIGINT AS (i * 2) VIRTUAL, gen_s VARCHAR(210) AS (CONCAT(vc, '!')) PERSISTENT
);
INSERT INTO types (id, ti, si, mi, i, bi, bit1, bit64, dec1, dec2, f, d, dt, tm, dtm, ts, y, c, vc, tx, mt, bin, vb, bl, lb, e, st, j, ip6, u, ip4) VALUES
  (1, -128, 65535, -8388608, -2147483648, -9223372036854775808, b'1', b'1111111111111111111111111111111111111111111111111111111111111111',
   '-12345678901234567890123456789012345.123456789012345678901234567890', 9999999999, -3.40282e38, 1.7976931348623157e308,
   '0000-00-00', '-838:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', 2155,
   'chars', 'varchar ütf8 😀', 'text', 'medium', x'0001020304050607', x'00ff', x'deadbeef', REPEAT('z', 70000),
   'c', 'x,z', '{"a": [1, 2.5, null, "s"]}', '2001:db8::ff00:42:8329', '123e4567-e89b-12d3-a456-426614174000', '192.168.0.1'),
  (18446744073709551615, 127, 0, 8388607, 2147483647, 9223372036854775807, b'0', b'0',
   '0.000000000000000000000000000001', 0, 1.17549435e-38, -2.2250738585072014e-308,
   '1000-01-01', '838:59:59', '1000-01-01 00:00:00', NULL, 1901,
   '', '', '', NULL, x'', x'', x'', NULL,
   NULL, '', 'null', '::', '00000000-0000-0000-0000-000000000000', '0.0.0.0'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE types SET vc = CONCAT(vc, '+'), i = i + 1 WHERE id = 1;
CREATE TABLE charsets (
  id INT PRIMARY KEY,
  l1 VARCHAR(20) CHARACTER SET latin1, l2 VARCHAR(20) CHARACTER SET latin2,
  cp VARCHAR(20) CHARACTER SET cp1251, sj VARCHAR(20) CHARACTER SET sjis,
  gb VARCHAR(20) CHARACTER SET gbk, u16 VARCHAR(20) CHARACTER SET utf16,
  asc1 VARCHAR(20) CHARACTER SET ascii, bin1 VARCHAR(20) CHARACTER SET binary
);
INSERT INTO charsets VALUES (1, 'café ñ', 'žluťoučký', 'привет', 'こんにちは', '你好', 'ü😀', 'plain', x'00ff80');
INSERT INTO charsets VALUES (2, _latin1 x'80818d8f909dff', _latin2 x'a1b1', _cp1251 x'98', _sjis x'8140', _gbk x'8140', 'x', _ascii x'ff', x'');
CREATE TABLE ci_keys (k VARCHAR(20) COLLATE utf8mb4_unicode_ci PRIMARY KEY, v INT);
INSERT INTO ci_keys VALUES ('Straße', 1), ('ABC', 2), ('trailing ', 3);
UPDATE ci_keys SET v = v + 10 WHERE k = 'abc';
CREATE TABLE nopk (a INT, b VARCHAR(10));
INSERT INTO nopk VALUES (1, 'dup'), (1, 'dup'), (2, NULL);
DELETE FROM nopk WHERE a = 1 LIMIT 1;
CREATE TABLE parent (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB;
CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent(id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB;
INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
INSERT INTO child VALUES (10, 1), (20, 2), (21, 2);
DELETE FROM parent WHERE id = 1;
UPDATE parent SET id = 3 WHERE id = 2;
CREATE TABLE ddl1 (id INT PRIMARY KEY, a INT, b VARCHAR(10));
INSERT INTO ddl1 VALUES (1, 1, 'one'), (2, 2, 'two');
ALTER TABLE ddl1 ADD COLUMN c DATETIME(6) NULL AFTER a, MODIFY b VARCHAR(40) NOT NULL DEFAULT '';
ALTER TABLE ddl1 RENAME COLUMN a TO a2;
ALTER TABLE ddl1 CHANGE b b2 VARCHAR(50);
INSERT INTO ddl1 (id, a2, b2) VALUES (3, 3, 'three');
ALTER TABLE ddl1 DROP COLUMN c;
ALTER TABLE ddl1 ADD INDEX (a2), ADD UNIQUE KEY u_b2 (b2);
ALTER TABLE ddl1 DROP PRIMARY KEY, ADD PRIMARY KEY (id, a2);
INSERT INTO ddl1 VALUES (1, 100, 'one again');
CREATE TABLE r1 (id INT PRIMARY KEY, v VARCHAR(64));
CREATE TABLE r2 (id INT PRIMARY KEY, v VARCHAR(64));
INSERT INTO r1 VALUES (1, 'r1');
INSERT INTO r2 VALUES (1, 'r2');
RENAME TABLE r1 TO r1n;
RENAME TABLE r1n TO tmp, r2 TO r1n, tmp TO r2;
INSERT INTO r1n VALUES (2, 'into r1n');
INSERT INTO r2 VALUES (2, 'into r2');
CREATE TABLE likeit LIKE ddl1;
INSERT INTO likeit SELECT * FROM ddl1;
CREATE TABLE ctas AS SELECT id, a2, b2 FROM ddl1;
ALTER TABLE ctas ADD PRIMARY KEY (id, a2);
TRUNCATE TABLE likeit;
INSERT INTO likeit VALUES (9, 9, 'after truncate');
REPLACE INTO r2 VALUES (1, 'replaced');
INSERT INTO r2 VALUES (1, 'dup') ON DUPLICATE KEY UPDATE v = CONCAT(v, '+odku');
UPDATE r2 JOIN r1n ON r1n.id = r2.id SET r2.v = CONCAT(r2.v, '/multi'), r1n.v = CONCAT(r1n.v, '/multi');
XA START 'torture1';
INSERT INTO r2 VALUES (10, 'xa');
UPDATE r1n SET v = 'xa' WHERE id = 1;
XA END 'torture1';
XA PREPARE 'torture1';
XA COMMIT 'torture1';
XA START 'torture2';
INSERT INTO r2 VALUES (11, 'xa one phase');
XA END 'torture2';
XA COMMIT 'torture2' ONE PHASE;
CREATE TABLE loaded (id INT PRIMARY KEY, v VARCHAR(20));
LOAD DATA LOCAL INFILE 'Reader::torture' INTO TABLE loaded FIELDS TERMINATED BY ',';
START TRANSACTION;
INSERT INTO loaded VALUES (5000, 'rolled back');
ROLLBACK;
START TRANSACTION;
INSERT INTO loaded VALUES (5001, 'committed');
SAVEPOINT s1;
INSERT INTO loaded VALUES (5002, 'undone');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
