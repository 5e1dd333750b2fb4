package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md's tables and .env.example from the registry")

const (
	configurationDoc = "../docs/configuration.md"
	envExample       = "../.env.example"
	beginTables      = "<!-- BEGIN VARIABLES: generated from config/vars.go by `go test ./config -update`; do not edit by hand -->\n"
	endTables        = "<!-- END VARIABLES -->\n"
)

// groups returns the registry's groups in order of first appearance.
func groups() []string {
	var gs []string
	seen := map[string]bool{}
	for _, v := range Vars {
		if !seen[v.Group] {
			seen[v.Group] = true
			gs = append(gs, v.Group)
		}
	}
	return gs
}

// markdownTables renders the registry as one table per group.
func markdownTables() string {
	var b strings.Builder
	for _, g := range groups() {
		fmt.Fprintf(&b, "\n### %s\n\n| Variable | Default | Secret | Meaning |\n|---|---|---|---|\n", g)
		for _, v := range Vars {
			if v.Group != g {
				continue
			}
			def := "—"
			if v.Default != "" {
				def = "`" + v.Default + "`"
			}
			secret := ""
			if v.Secret {
				secret = "yes"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", v.Name, def, secret, strings.ReplaceAll(v.Doc, "|", `\|`))
		}
	}
	b.WriteString("\n")
	return b.String()
}

// envFile renders .env.example: every variable, commented out, with its
// default.
func envFile() string {
	var b strings.Builder
	b.WriteString(`# Every environment variable of the uptime validator coordinator, with its
# default. Generated from config/vars.go by "go test ./config -update"; do not
# edit by hand. Copy it to .env (real environment variables win over .env) and
# uncomment what you set; docs/configuration.md explains each one.
# Never commit a .env holding secrets.
`)
	for _, g := range groups() {
		fmt.Fprintf(&b, "\n## %s\n", g)
		for _, v := range Vars {
			if v.Group != g {
				continue
			}
			b.WriteString("\n")
			for _, line := range wrap(v.Doc, 76) {
				fmt.Fprintf(&b, "# %s\n", line)
			}
			if v.Secret {
				b.WriteString("# (secret: masked in logs)\n")
			}
			fmt.Fprintf(&b, "#%s=%s\n", v.Name, v.Default)
		}
	}
	return b.String()
}

func wrap(text string, width int) []string {
	var lines []string
	var line string
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// TestConfigurationDocIsGenerated keeps docs/configuration.md's tables in
// step with the registry.
func TestConfigurationDocIsGenerated(t *testing.T) {
	data, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, beginTables), strings.Index(doc, endTables)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q", configurationDoc, beginTables, endTables)
	}
	want := doc[:i+len(beginTables)] + markdownTables() + doc[j:]
	if *update {
		if err := os.WriteFile(configurationDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if doc != want {
		t.Errorf("%s is stale: run go test ./config -update", configurationDoc)
	}
}

// TestEnvExampleIsGenerated keeps .env.example in step with the registry.
func TestEnvExampleIsGenerated(t *testing.T) {
	want := envFile()
	if *update {
		if err := os.WriteFile(envExample, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != want {
		t.Errorf("%s is stale: run go test ./config -update", envExample)
	}
}

// TestGeneratedFilesListEveryVariable checks the rendering itself, with
// literal expectations: a plain variable with a default, a required one, a
// secret one.
func TestGeneratedFilesListEveryVariable(t *testing.T) {
	tables, env := markdownTables(), envFile()
	for _, want := range []string{
		"| `SURVEY_INTERVAL_MINUTES` | `20` |  | Length of one batch (survey interval) in minutes. |\n",
		"| `POSTGRES_HOST` | — |  | Required. PostgreSQL host name or address. |\n",
		"| `POSTGRES_PASSWORD` | — | yes | Password (may be empty with trust or peer authentication). |\n",
		"\n### Postgres\n",
	} {
		if !strings.Contains(tables, want) {
			t.Errorf("tables lack %q", want)
		}
	}
	for _, want := range []string{
		"\n# Length of one batch (survey interval) in minutes.\n#SURVEY_INTERVAL_MINUTES=20\n",
		"\n# Required. PostgreSQL host name or address.\n#POSTGRES_HOST=\n",
		"# (secret: masked in logs)\n#POSTGRES_PASSWORD=\n",
		"\n## Postgres\n",
	} {
		if !strings.Contains(env, want) {
			t.Errorf(".env.example lacks %q", want)
		}
	}
	for _, v := range Vars {
		if !strings.Contains(tables, "| `"+v.Name+"` |") || !strings.Contains(env, "\n#"+v.Name+"="+v.Default+"\n") {
			t.Errorf("%s missing from the generated files", v.Name)
		}
	}
}
