// Package config loads a command's configuration from a YAML file, the environment and
// flags, in that order of increasing precedence, and validates it.
//
// A file may refer to environment variables as ${NAME}. Every flag can also be given as
// the environment variable MUSIC_<FLAG> (upper case, '-' and '.' as '_'): --nats-url is
// MUSIC_NATS_URL.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Validator is a configuration struct that can check itself. Validate returns an error
// naming the offending field.
type Validator interface{ Validate() error }

// EnvName is the environment variable that sets the flag called name.
func EnvName(flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "MUSIC_" + strings.ToUpper(r.Replace(flagName))
}

// LoadFile reads the YAML file at path into cfg after expanding ${VAR} references.
// Unknown keys are an error that names them.
func LoadFile(path string, cfg any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	text := os.ExpandEnv(string(raw))
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w%s", path, err, quoteLines(text, err))
	}
	return nil
}

var yamlLine = regexp.MustCompile(`line (\d+):`)

// quoteLines appends the text of the lines a YAML error points at, so the message shows
// the key that was wrong and not only its line number.
func quoteLines(text string, err error) string {
	lines := strings.Split(text, "\n")
	var out []string
	for _, m := range yamlLine.FindAllStringSubmatch(err.Error(), -1) {
		if n, _ := strconv.Atoi(m[1]); n >= 1 && n <= len(lines) {
			out = append(out, fmt.Sprintf("line %d is %q", n, strings.TrimSpace(lines[n-1])))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

// Parse fills cfg, whose fields fs's flags are bound to, from (lowest first) the values
// already in cfg, the file named by the flag "config" if fs has it and it is set, the
// MUSIC_* environment variables, and args. It then validates cfg.
func Parse(fs *flag.FlagSet, args []string, cfg Validator) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		if err := LoadFile(f.Value.String(), cfg); err != nil {
			return err
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("config: %s=%q: %w", EnvName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil { // flags win over file and environment
		return err
	}
	return cfg.Validate()
}
