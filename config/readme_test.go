package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEveryVariable keeps the README's configuration table in step
// with the registry.
func TestREADMEListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars {
		def := "—"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		if !strings.Contains(string(readme), "| `"+v.Name+"` | "+def+" |") {
			t.Errorf("README.md lacks a configuration row for %s with default %s", v.Name, def)
		}
	}
}
