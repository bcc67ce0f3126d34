// Command music is the MUSIC agent and toolbox. Run `music help` for its subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"sort"

	"go.uber.org/zap"

	"github.com/music-coord/music/internal/config"
	"github.com/music-coord/music/internal/logging"
)

// A subcommand's run gets the arguments after its name and returns the exit status.
type subcommand struct {
	summary string
	run     func(args []string) int
}

var subcommands = map[string]subcommand{
	"apply":   {"replay other sites' change streams into the local MariaDB and the MUSIC store", runApply},
	"capture": {"tail a site's MariaDB binlog into its JetStream stream", runCapture},
	"gateway": {"serve applications the site's MariaDB through MySQL's protocol, gating sync tables (ownership, durable commit)", runGateway},
	"nats":    {"run a NATS server with JetStream (the local topology's message bus)", runNATS},
	"status":  {"show every site's apply lag, pending changes and last error, and the change streams", runStatus},
	"server":  {"serve the MUSIC v2 REST API (Cassandra store, ZooKeeper locks)", runServer},
	"resync":  {"make a site's table hold exactly the MUSIC store's (or a peer site's) rows, while mirroring goes on", runResync},
	"verify":  {"compare one table's rows at every site and in the MUSIC store", runVerify},
	"version": {"print the version", runVersion},
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	switch name {
	case "help", "-h", "--help", "-help":
		usage(os.Stdout)
		return
	}
	sc, ok := subcommands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "music: unknown subcommand %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(sc.run(os.Args[2:]))
}

func usage(w *os.File) {
	fmt.Fprintln(w, "music: multi-site state coordination for MariaDB, Cassandra and ZooKeeper.")
	fmt.Fprintln(w, "\nUsage: music <subcommand> [flags]   (music <subcommand> --help for its flags)\n\nSubcommands:")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, subcommands[n].summary)
	}
}

func runVersion([]string) int {
	fmt.Println("music", version)
	return 0
}

// parseFlags fills cfg from the config file, environment and args (internal/config) and
// reports problems on stderr. ok is false when the command should exit with code.
func parseFlags(name string, fs *flag.FlagSet, args []string, cfg config.Validator) (code int, ok bool) {
	if err := config.Parse(fs, args, cfg); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(os.Stderr, "music %s: %v\n", name, err)
		return 2, false
	}
	return 0, true
}

// newLogger builds the command's logger, reporting a bad log configuration on stderr.
func newLogger(name string, o logging.Options) (*zap.Logger, bool) {
	log, err := logging.New(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "music %s: %v\n", name, err)
		return nil, false
	}
	return log, true
}

// profiling serves Go's profiles under /debug/pprof/ on an agent's metrics address (which
// listens on loopback by default).
func profiling(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
