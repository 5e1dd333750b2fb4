package docscheck

import (
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"unicode"
)

var (
	headingRE = regexp.MustCompile(`^#{1,6}[ \t]+(.*?)[ \t#]*$`)
	htmlIDRE  = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	// linkRE finds the target of an inline link or image: ](target) or
	// ](target "title"); the link text may span lines, the target may not.
	linkRE       = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	headLinkRE   = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	inlineCodeRE = regexp.MustCompile("`[^`]*`")
	schemeRE     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// slug is GitHub's anchor for a heading: the heading's text (links reduced
// to their text), lower-cased, every character other than a letter, a
// digit, a space, '-' or '_' dropped, spaces turned into '-'.
func slug(heading string) string {
	heading = headLinkRE.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// lines returns the file's lines outside fenced code blocks.
func lines(text string) []string {
	var out []string
	fence := ""
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimLeft(l, " ")
		if fence == "" && (strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~")) {
			fence = t[:3]
			continue
		}
		if fence != "" {
			if strings.HasPrefix(t, fence) {
				fence = ""
			}
			continue
		}
		out = append(out, l)
	}
	return out
}

// anchors returns the anchors a Markdown file defines: one per heading
// (duplicates numbered -1, -2... as GitHub does) and explicit <a id/name>.
func anchors(text string) map[string]bool {
	set := map[string]bool{}
	seen := map[string]int{}
	for _, l := range lines(text) {
		for _, m := range htmlIDRE.FindAllStringSubmatch(l, -1) {
			set[m[1]] = true
		}
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			set[s+"-"+itoa(n)] = true
		} else {
			set[s] = true
		}
		seen[s]++
	}
	return set
}

func itoa(n int) string {
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

// brokenLinks checks every relative link of the given Markdown files of
// fsys: the file or directory it names must exist, and an anchor must be
// one of the target Markdown file's anchors. It returns one line per broken
// link, "file:line: target: why".
func brokenLinks(fsys fs.FS, files []string) []string {
	cache := map[string]map[string]bool{}
	anchorsOf := func(name string) (map[string]bool, error) {
		if a, ok := cache[name]; ok {
			return a, nil
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		cache[name] = anchors(string(b))
		return cache[name], nil
	}
	var broken []string
	for _, file := range files {
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			broken = append(broken, file+": "+err.Error())
			continue
		}
		lineNo := 0
		fence := false
		for _, l := range strings.Split(string(b), "\n") {
			lineNo++
			t := strings.TrimLeft(l, " ")
			if strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
				fence = !fence
				continue
			}
			if fence {
				continue
			}
			l = inlineCodeRE.ReplaceAllString(l, "")
			for _, m := range linkRE.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if schemeRE.MatchString(target) || strings.HasPrefix(target, "//") {
					continue
				}
				where := file + ":" + itoa(lineNo) + ": " + target + ": "
				p, anchor, _ := strings.Cut(target, "#")
				name := file
				if p != "" {
					name = path.Clean(path.Join(path.Dir(file), p))
					if _, err := fs.Stat(fsys, name); err != nil {
						broken = append(broken, where+"no such file")
						continue
					}
				}
				if anchor == "" || !strings.HasSuffix(name, ".md") {
					continue
				}
				a, err := anchorsOf(name)
				if err != nil {
					broken = append(broken, where+err.Error())
					continue
				}
				if !a[anchor] {
					broken = append(broken, where+"no heading with this anchor in "+name)
				}
			}
		}
	}
	return broken
}

// TestDocumentationLinks fails on any broken relative link or anchor in
// README.md and docs/*.md.
func TestDocumentationLinks(t *testing.T) {
	root := os.DirFS("../..")
	files, err := fs.Glob(root, "docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no docs/*.md found")
	}
	files = append([]string{"README.md"}, files...)
	sort.Strings(files[1:])
	for _, b := range brokenLinks(root, files) {
		t.Error(b)
	}
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Why a producer missed a batch: evidence, `explain` and `status`":             "why-a-producer-missed-a-batch-evidence-explain-and-status",
		"Building: the first run and the binary's size":                               "building-the-first-run-and-the-binarys-size",
		"Read API, stream and web pages":                                              "read-api-stream-and-web-pages",
		"`coordinator explain PRODUCER_KEY [--from T] [--to T] [--format text|json]`": "coordinator-explain-producer_key---from-t---to-t---format-textjson",
		"Re-scoring the past and catching up":                                         "re-scoring-the-past-and-catching-up",
		"See [the docs](docs/x.md) now":                                               "see-the-docs-now",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestBrokenLinksFound checks the checker on a small made-up tree: it must
// report exactly the broken links, and nothing inside code.
func TestBrokenLinksFound(t *testing.T) {
	fsys := fstest.MapFS{
		"README.md": {Data: []byte("# Top\n\n## Same\n\n## Same\n\n" +
			"[ok](#top) [ok](#same-1) [ok](docs/a.md#deep-one) [ok](docs/a.md) [ok](docs)\n" +
			"[bad](#same-2) [bad](docs/a.md#nowhere)\n" +
			"[bad](docs/missing.md) [ext](https://example.com/#x) `[code](#nope)`\n" +
			"```\n[code](#nope)\n```\n")},
		"docs/a.md": {Data: []byte("# A\n\n### Deep one\n\n[ok](../README.md#same) [bad](../README.md#gone) [ok](#a)\n")},
	}
	got := brokenLinks(fsys, []string{"README.md", "docs/a.md"})
	want := []string{
		"README.md:8: #same-2: no heading with this anchor in README.md",
		"README.md:8: docs/a.md#nowhere: no heading with this anchor in docs/a.md",
		"README.md:9: docs/missing.md: no such file",
		"docs/a.md:5: ../README.md#gone: no heading with this anchor in README.md",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("brokenLinks =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
