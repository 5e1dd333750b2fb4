// Package docscheck holds the test that keeps the Markdown documentation's
// relative links and anchors (README.md and docs/*.md) resolvable.
package docscheck
