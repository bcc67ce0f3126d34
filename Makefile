# MUSIC: the two commands are `make demo` (set up and run on the local topology) and
# `make test`. Every target installs what it needs.
SHELL := /bin/bash
LOCAL := deploy/local

.PHONY: demo install up down status test e2e bench-e2e bench-sync test-short bench build clean

## demo: install, start the local 3-site topology and an agent pair per site, write at
## every site and show all sites and the MUSIC store converge
demo: up
	@$(LOCAL)/status.sh
	@$(LOCAL)/demo.sh

## install: install what the local topology needs (Debian packages, Cassandra jars, binary)
install:
	@$(LOCAL)/install.sh

## up: start MariaDB per site, ZooKeeper, NATS JetStream and Cassandra (idempotent)
up: install
	@$(LOCAL)/up.sh

## down: stop the local topology (data stays in .local/)
down:
	@$(LOCAL)/down.sh

## status: each service, its address and whether it answers
status:
	@$(LOCAL)/status.sh

build:
	go build -o bin/music ./cmd/music

## test: vet and race-test everything against the real servers (started if missing)
test: up
	go vet ./...
	go test -race -count=1 -timeout 30m ./...

## e2e: three-site end-to-end tests of the music agents (SIGKILL, site down, NATS restart)
e2e: up
	go test -race -count=1 -timeout 20m ./tests/e2e/

## bench-e2e: mirroring a->b against MariaDB's own replication, same run: W1 bulk, W2/W3
## 8 clients x 2,500 single-row INSERTs/UPDATEs (E2E_BENCH_PER_CLIENT to change), 10k rows/s
## offered; prints rates, lag and CPU per 10k rows per process
bench-e2e: up
	go test -run '^$$' -bench MirroringVsNative -benchtime 1x -timeout 30m ./tests/e2e/

## bench-sync: sync tables: added COMMIT latency, ownership moves, throughput, bank
## (E2E_SYNC_LATENCY=20ms adds one-way latency to site b's ZooKeeper and NATS links)
bench-sync: up
	go test -run '^$$' -bench BenchmarkSync -benchtime 1x -timeout 20m ./tests/e2e/

## test-short: unit tests of pure logic only, no servers
test-short:
	go test -short -count=1 ./...

## bench: benchmarks against the real servers
bench: up
	go test -run '^$$' -bench . -benchtime 3s ./...

## clean: stop the topology and remove its data (keeps the download caches)
clean: down
	rm -rf .local bin
