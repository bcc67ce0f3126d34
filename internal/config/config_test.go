package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testConfig struct {
	NATSURL string `yaml:"nats_url"`
	Site    string `yaml:"site"`
	Workers int    `yaml:"workers"`
}

func (c *testConfig) Validate() error {
	if c.Site == "" {
		return errors.New("site: must be set")
	}
	if c.Workers < 1 {
		return errors.New("workers: must be at least 1")
	}
	return nil
}

func newFlags(c *testConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.String("config", "", "config file")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "")
	fs.StringVar(&c.Site, "site", c.Site, "")
	fs.IntVar(&c.Workers, "workers", c.Workers, "")
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "music.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	t.Setenv("MUSIC_TEST_HOST", "nats.example:4222")
	t.Setenv("MUSIC_WORKERS", "7")
	p := writeFile(t, "nats_url: nats://${MUSIC_TEST_HOST}\nsite: a\nworkers: 2\n")
	c := &testConfig{Workers: 1}
	if err := Parse(newFlags(c), []string{"--config", p, "--site", "b"}, c); err != nil {
		t.Fatal(err)
	}
	if got, want := c.NATSURL, "nats://nats.example:4222"; got != want {
		t.Fatalf("nats_url = %q, want %q (file with env expansion)", got, want)
	}
	if got, want := c.Workers, 7; got != want {
		t.Fatalf("workers = %d, want %d (environment over file)", got, want)
	}
	if got, want := c.Site, "b"; got != want {
		t.Fatalf("site = %q, want %q (flag over file)", got, want)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	cases := map[string]struct {
		file, env string
		args      []string
		want      string
	}{
		"unknown key":     {file: "site: a\nworkerz: 3\n", want: "workerz"},
		"wrong type":      {file: "site: a\nworkers: many\n", want: "workers"},
		"invalid value":   {file: "site: a\nworkers: 0\n", want: "workers"},
		"bad environment": {file: "site: a\n", env: "lots", want: "MUSIC_WORKERS"},
		"missing file":    {args: []string{"--config", "/nonexistent/music.yaml"}, want: "/nonexistent/music.yaml"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("MUSIC_WORKERS", tc.env)
			}
			args := tc.args
			if tc.file != "" {
				args = []string{"--config", writeFile(t, tc.file)}
			}
			c := &testConfig{Workers: 1}
			err := Parse(newFlags(c), args, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
