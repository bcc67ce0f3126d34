package rest

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Every route is in openapi.yaml with its method, and the document names no other.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" {
				documented[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	routed := map[string]bool{}
	for _, r := range (&API{}).routeTable() {
		method, path, _ := strings.Cut(r.pattern, " ")
		key := method + " " + strings.TrimPrefix(path, Prefix)
		routed[key] = true
		if !documented[key] {
			t.Errorf("route %s is not in openapi.yaml", key)
		}
	}
	for k := range documented {
		if !routed[k] {
			t.Errorf("openapi.yaml documents %s, which is not routed", k)
		}
	}
}
