package main

import "github.com/alecthomas/kong"

// HelpCmd is "coordinator help [COMMAND...]", the same as
// "coordinator [COMMAND...] --help".
type HelpCmd struct {
	Command []string `arg:"" optional:"" help:"The command to explain; none for the list of commands."`
}

// Run prints the help of the command named.
func (h *HelpCmd) Run(parser *kong.Kong) error {
	_, err := parser.Parse(append(append([]string{}, h.Command...), "--help"))
	return err
}
