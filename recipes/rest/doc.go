// Package rest serves the ONAP MUSIC v2 REST API under /MUSIC/rest/v2: keyspaces,
// tables, rows (eventual, critical and atomic) and locks, plus health, version and the
// OpenAPI document, with Basic authentication, per-namespace authorization over
// keyspaces, body size limits and JSON errors.
//
// Responses keep ONAP's shape: {"status": "SUCCESS"|"FAILURE", "message"|"error"|
// "result"|"lock": ...} and the X-minorVersion, X-patchVersion and X-latestVersion
// headers. Status codes: 200 on success; 400 for a malformed request (and, as ONAP, for
// an acquire that did not get the lock); 401/403 for authentication/authorization; 404
// for an unknown table or column; 409 when conditions fail, a critical operation's lock is
// not held, or an atomic operation cannot get its lock in time; 413 for a body too
// large; 503 when Cassandra or ZooKeeper cannot serve.
package rest
